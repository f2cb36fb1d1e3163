"""Bilibili live chat: the web danmaku websocket (``client``) and the open platform / 身份码 variant (``open_client``).

Pure parts: ``protocol`` (packets, commands, gift merging), ``api`` (room/buvid/WBI/danmu-info HTTP helpers),
``open_protocol`` (open-platform signing and commands). The clients only move bytes and time.
"""
