"""A real gRPC server implementing Riva's ASR service, for tests and development.

The servicer checks requests the way Riva does; what is "heard" comes from a
pluggable recognizer: scripted (deterministic, test-controlled), pocketsphinx
(real offline speech recognition) or tagged (benchmarks).
"""

from fake_riva.server import FakeRiva, ServerStats

__all__ = ["FakeRiva", "ServerStats"]
