"""``POST /v1/audio/transcriptions``: an uploaded file through a Reserve session, answered in
OpenAI's response formats."""
