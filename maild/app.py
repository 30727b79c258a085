"""The composition root: settings → engine → clock → services → listener → worker.

The only place that wires things together, in three modules by what they do:
`maild.wiring` builds the parts (`build()`, sync, also used by the CLI); `maild.serving`
runs any of the three roles (listener, journal processor, delivery worker) in one event loop
until asked to stop, then shuts down in a bounded time: stop accepting, finish what is in
flight, flush the outbox; `maild.daemon` is `maild run` (the listener here and the other two
roles in supervised child processes, `maild work`, or all inline). The command line and the
tests reach them through this module's names.
"""

from __future__ import annotations

from maild.daemon import BUSY_POLL_SECONDS, ROLES, RUNG_POLL_SECONDS, run, work
from maild.serving import EXIT_TASK_DIED, Running, serve
from maild.wiring import (
    Parts,
    build,
    desk_config,
    group_slas,
    group_templates,
    make_jobs,
    make_readers,
    make_transport,
    make_web,
    make_worker,
    opened,
    pipeline_config,
    prepare_database,
    run_dir,
)

__all__ = [
    "BUSY_POLL_SECONDS", "EXIT_TASK_DIED", "ROLES", "RUNG_POLL_SECONDS", "Parts", "Running",
    "build", "desk_config", "group_slas", "group_templates", "make_jobs", "make_readers",
    "make_transport", "make_web", "make_worker", "opened", "pipeline_config",
    "prepare_database", "run", "run_dir", "serve", "work",
]
