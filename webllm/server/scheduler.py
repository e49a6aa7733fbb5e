"""The GPU queue: requests run one at a time on one worker thread, in arrival order.

A model has one KV cache and the GPU one queue, so requests are served first come, first served:
none is lost, none sees another's tokens. A bounded number may wait (beyond it: EngineBusyError,
HTTP 503). Each job carries a cancel event: set before the job starts, the job is skipped; set while
it runs, the engine stops before the next token, and the next job starts.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from webllm.errors import EngineBusyError

_END = object()


class Job:
    def __init__(self, run: Callable[[threading.Event], Any], loop: asyncio.AbstractEventLoop):
        self.run = run
        self.cancel = threading.Event()
        self.items: asyncio.Queue = asyncio.Queue()
        self._loop = loop

    def put(self, item) -> None:
        """Hand `item` to the request's event loop; where that loop is closed (its client and handler are
        gone, e.g. a test client shut down mid-request), the job is cancelled and the item dropped, so
        that the worker thread goes on to the next job."""
        try:
            self._loop.call_soon_threadsafe(self.items.put_nowait, item)
        except RuntimeError:  # "Event loop is closed"
            self.cancel.set()

    async def next(self):
        """The job's next item: a chunk (or the whole response), an exception, or _END."""
        return await self.items.get()


class Scheduler:
    def __init__(self, max_queue: int = 64):
        self.max_queue = max_queue
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._pending = 0  # queued or running
        self._count_lock = threading.Lock()
        self.served = 0
        self.cancelled = 0  # jobs stopped (or skipped) because their client went away
        self._thread = threading.Thread(target=self._loop, name="webllm-gpu", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, run: Callable[[threading.Event], Any]) -> Job:
        """Queue `run(cancel)`; its result (or, for an iterator, each item) arrives on `job.next()`."""
        with self._count_lock:
            if self._pending >= self.max_queue:
                raise EngineBusyError(f"the server is busy ({self._pending} requests queued); retry later")
            self._pending += 1
        job = Job(run, asyncio.get_running_loop())
        self._jobs.put(job)
        return job

    def close(self) -> None:
        self._jobs.put(None)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            cancelled = job.cancel.is_set()
            try:
                if cancelled:
                    continue
                result = job.run(job.cancel)
                if isinstance(result, Iterator):
                    try:
                        for item in result:
                            if job.cancel.is_set():
                                cancelled = True
                                break
                            job.put(item)
                    finally:
                        close = getattr(result, "close", None)
                        if close is not None:
                            close()
                else:
                    cancelled = job.cancel.is_set()
                    job.put(result)
            except BaseException as e:  # delivered to the request's handler, which answers with it
                job.put(e)
            finally:
                self.served += 1
                self.cancelled += cancelled
                job.put(_END)
                with self._count_lock:
                    self._pending -= 1


END = _END
