"""The background log writer (`Store.write_in_background`, what the server uses): batched off the caller's
thread, yet no read misses a row and nothing queued is lost when the store closes or the process ends."""

from __future__ import annotations

import subprocess
import sys
import threading

from imagine.store import Store


def _row(i: int) -> dict:
    return {"id": f"r{i:04d}", "model": "m", "engine": "mock", "output_text": str(i)}


def test_reads_see_every_queued_row_and_writes_leave_the_caller(tmp_path):
    store = Store(tmp_path / "logs.db")
    store.write_in_background()
    for i in range(300):
        store.log(_row(i))
    assert store.count() == 300  # a read waits for the queue first
    threads = [threading.Thread(target=lambda k=k: [store.log(_row(1000 + 100 * k + i)) for i in range(100)])
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()  # flushes, stops the writer
    assert Store(tmp_path / "logs.db").count() == 700
    assert store._writer is None


def test_rows_queued_at_exit_are_written(tmp_path):
    code = ("import sys; from imagine.store import Store\n"
            "s = Store(sys.argv[1]); s.write_in_background()\n"
            "[s.log({'id': f'x{i}', 'model': 'm', 'engine': 'mock'}) for i in range(500)]\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "logs.db")], check=True, timeout=120)
    assert Store(tmp_path / "logs.db").count() == 500
