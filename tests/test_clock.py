"""The simulated clock: any finite virtual time, a clear error for an endless sleep, and a
simulated run that stops when the awaiting task is cancelled (Ctrl-C, a timeout)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import nbflow as nf

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, **kwargs) -> subprocess.Popen[str]:
    # A broken clock spins forever in a thread that nothing can stop: run it in a process.
    return subprocess.Popen(
        # -X faulthandler: a child that hangs dumps every thread's stack on SIGABRT.
        [sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_huge_virtual_sleeps_take_no_real_time():
    """Past ~1e7 s, t + 1e-9 == t in floats: the loop spun on a timer that was never due."""
    process = _python(
        """
        import asyncio, json, time
        import nbflow as nf

        flow = nf.Flow("ages", store=None)

        @flow.task
        async def wait():
            seen = []
            for delay in (1e9, 1.0, 1e15, 1e300, 1e300):
                await asyncio.sleep(delay)
                seen.append(asyncio.get_running_loop().time())
            return seen

        began = time.perf_counter()
        run = flow.run(simulate=True)
        print(json.dumps([run.status, run.results["wait"], time.perf_counter() - began]))
        """
    )
    try:
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    status, seen, seconds = json.loads(out)
    assert status == "succeeded", err
    assert seen == [1e9, 1e9 + 1.0, 1e9 + 1.0 + 1e15, 1e300, 2e300]
    assert seconds < 5


def test_an_endless_sleep_in_a_flow_is_a_clear_error():
    process = _python(
        """
        import asyncio, math
        import nbflow as nf

        flow = nf.Flow("endless", store=None)

        @flow.task
        async def wait():
            await asyncio.sleep(1e308)
            await asyncio.sleep(1e308)  # 2e308 is inf

        try:
            flow.run(simulate=True)
        except nf.SimulationError as error:
            print("SimulationError", error)
        """
    )
    try:
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert out.startswith("SimulationError simulated run: every task left waits"), err
    assert "Task was destroyed" not in err


def test_cancelling_the_awaiting_task_stops_the_simulated_run():
    ended = []

    async def main() -> None:
        flow = nf.Flow("ticking", store=None)

        @flow.task
        async def tick():
            real_deadline = time.monotonic() + 20  # a broken cancel does not spin forever
            try:
                while time.monotonic() < real_deadline:
                    await asyncio.sleep(3600)  # endless virtual time, like a real ticker
            except asyncio.CancelledError:
                ended.append("cancelled")
                raise
            ended.append("ran out")

        async with asyncio.timeout(0.3):
            await flow.arun(simulate=True)

    began = time.perf_counter()
    with pytest.raises(TimeoutError):
        asyncio.run(main())
    assert ended == ["cancelled"]  # the thread's run was cancelled before arun returned
    assert time.perf_counter() - began < 5


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_stops_a_simulated_run_in_a_script():
    process = _python(
        """
        import asyncio, signal, sys
        import nbflow as nf

        # Ctrl-C as in a terminal: started from a background job of a shell (as CI may
        # be), this process would inherit SIGINT ignored, and nothing would reach it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        flow = nf.Flow("ticking", store=None)

        @flow.task
        async def tick():
            print("ticking", flush=True)
            while True:
                await asyncio.sleep(3600)

        flow.run(simulate=True)
        """
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ticking"
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:  # say where it hangs
            process.send_signal(signal.SIGABRT)
            _, err = process.communicate(timeout=10)
            pytest.fail(f"the run did not end within 20 s of SIGINT; its threads:\n{err}")
    finally:
        process.kill()
    assert process.returncode != 0
    assert "KeyboardInterrupt" in err
