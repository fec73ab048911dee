"""Realtime transcription sockets in the dialects clients already speak (OpenAI GA, OpenAI beta,
NVIDIA Riva realtime), each a thin translation onto a Reserve session."""
