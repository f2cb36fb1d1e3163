"""Static web assets (the OBS browser-source page, the control panel); plain HTML/JS, no build step."""
