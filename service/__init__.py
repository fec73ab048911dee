"""Reserve: a streaming speech-recognition gateway from WebSocket/SSE to NVIDIA Riva."""
