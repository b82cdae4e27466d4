"""Audio devices and engines: mic, speaker, WAV files, VAD, STT, TTS."""
