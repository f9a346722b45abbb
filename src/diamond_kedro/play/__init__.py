"""Playing DIAMOND's world models (``diamond-kedro play atari|csgo``): input mappings, sessions, window, recorder."""
