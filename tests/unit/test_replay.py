from service.sessions.replay import ReplayBuffer


def test_release_cuts_on_sample_boundaries_and_keeps_absolute_offsets() -> None:
    buffer = ReplayBuffer(max_bytes=1000, frame_bytes=2)
    for chunk in (b"a" * 10, b"b" * 10, b"c" * 10):
        buffer.append(chunk)
    buffer.release_to(15)  # rounds down to 14
    assert (buffer.start, buffer.end) == (14, 30)
    assert b"".join(buffer) == b"b" * 6 + b"c" * 10
    buffer.clear()
    assert buffer.size == 0 and list(buffer) == []
    buffer.append(b"d" * 4)
    assert (buffer.start, buffer.end) == (30, 34)


def test_overflow_drops_the_oldest_audio_and_counts_it() -> None:
    buffer = ReplayBuffer(max_bytes=8, frame_bytes=2)
    buffer.append(b"1" * 6)
    buffer.append(b"2" * 6)
    assert buffer.size == 8 and buffer.dropped_bytes == 4
    assert b"".join(buffer) == b"11" + b"2" * 6
