#!/usr/bin/env python3
"""How fast this machine hands a process memory it has not touched yet.

Maps 64 MiB of anonymous memory, writes one byte per 4 KiB page (so the
kernel faults in and zeroes every page), and prints the CPU time and the
rate, four times each with transparent huge pages requested
(MADV_HUGEPAGE, as mimalloc asks for its arenas) and without. Each map is
unmapped before the next, so every round starts from fresh memory.

Why: `vigil bench ingest` and the judge bench both pay for fresh memory
(a new consumer and store per pass, arenas that grow). On a machine
where zeroing runs at 10 GB/s that is noise; where it runs at 1 GB/s, a
pass that takes 50 MB of new memory spends 50 ms on it. Run this next to
a benchmark to know which machine it ran on (docs/BENCHMARKS.md).

Standard library only (Python 3.8+ for mmap.madvise).
"""

import mmap
import time

SIZE = 64 << 20
PAGE = 4096
ROUNDS = 4


def touch_fresh(huge: bool) -> float:
    """CPU seconds to fault in SIZE bytes of fresh memory."""
    m = mmap.mmap(-1, SIZE)
    try:
        if huge and hasattr(mmap, "MADV_HUGEPAGE"):
            m.madvise(mmap.MADV_HUGEPAGE)
        start = time.process_time()
        for off in range(0, SIZE, PAGE):
            m[off] = 1
        return time.process_time() - start
    finally:
        m.close()


def main() -> None:
    for huge in (True, False):
        label = "MADV_HUGEPAGE" if huge else "4 KiB pages"
        for r in range(ROUNDS):
            cpu = touch_fresh(huge)
            print(
                f"{label:13}  round {r + 1}  {cpu * 1e3:6.1f} ms CPU for "
                f"{SIZE >> 20} MiB  = {SIZE / cpu / 1e9:5.2f} GB/s  "
                f"({cpu * 1e3 / (SIZE >> 20):.2f} ms per MiB)"
            )


if __name__ == "__main__":
    main()
