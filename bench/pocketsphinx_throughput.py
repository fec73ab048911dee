"""How many pocketsphinx streams one process decodes faster than real time.

    python -m bench.pocketsphinx_throughput 1 2 4 8

Each stream is a thread with its own decoder, fed the speech fixtures (12 s) in 100 ms
chunks as fast as it decodes; prints the total and per-stream real-time factor.
"""

from __future__ import annotations

import sys
import threading
import time
import wave
from pathlib import Path

from fake_riva.recognizers.base import StreamSettings
from fake_riva.recognizers.pocketsphinx import make_pocketsphinx_recognizer

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
NAMES = ("call_back", "find_keys", "thank_you", "children_park")


def _read(path: Path) -> bytes:
    with wave.open(str(path)) as wav:
        frames: bytes = wav.readframes(wav.getnframes())
    return frames


def main(argv: list[str]) -> None:
    audio = b"".join(_read(DATA / f"{n}.wav") for n in NAMES)
    seconds = len(audio) / 32000
    settings = StreamSettings("LINEAR_PCM", 16000, "en-US", True, True, False)

    def stream() -> None:
        recognizer = make_pocketsphinx_recognizer(settings)
        for k in range(0, len(audio), 3200):
            recognizer.accept(audio[k : k + 3200])
        recognizer.finish()

    print("| streams | total x real time | per stream x real time |")
    print("|---|---|---|")
    for count in [int(a) for a in argv] or [1, 2, 4, 8]:
        started = time.perf_counter()
        threads = [threading.Thread(target=stream) for _ in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        print(f"| {count} | {count * seconds / elapsed:.1f} | {seconds / elapsed:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
