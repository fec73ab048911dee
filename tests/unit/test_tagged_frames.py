"""The benchmark's tagged frames: every frame is answered, even where a gateway merged several."""

from __future__ import annotations

from bench.model import chunk, chunk_bytes, tag
from fake_riva.recognizers.base import StreamSettings
from fake_riva.recognizers.tagged import TaggedRecognizer, read_tags


def test_one_frame_one_tag_and_untagged_lengths_end_the_walk() -> None:
    assert read_tags(chunk(3, 7)) == [tag(3, 7)]
    assert read_tags(tag(1, 2).to_bytes(8, "little") + bytes(3192)) == [tag(1, 2)]  # no length: one frame


def test_merged_frames_of_any_size_give_each_tag_in_order() -> None:
    for size in (chunk_bytes(0.02), chunk_bytes(0.1), chunk_bytes(0.2)):
        merged = b"".join(chunk(5, k, size) for k in range(4))
        assert read_tags(merged) == [tag(5, k) for k in range(4)]


def test_recognizer_answers_each_merged_frame_and_counts_finals_by_frame() -> None:
    settings = StreamSettings(
        encoding="LINEAR_PCM",
        sample_rate_hertz=16000,
        language_code="en-US",
        interim_results=True,
        word_time_offsets=False,
        automatic_punctuation=False,
        custom_configuration={"fake.final_every": "3"},
    )
    recognizer = TaggedRecognizer(settings)
    first = recognizer.accept(b"".join(chunk(0, k) for k in range(2)))
    second = recognizer.accept(chunk(0, 2))
    assert [(h.text, h.is_final) for h in first + second] == [("t0", False), ("t1", False), ("t2", True)]
    assert [h.text for h in recognizer.finish()] == ["t2 end"]
