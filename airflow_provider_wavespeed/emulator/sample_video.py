"""A tiny playable H.264 MP4 that every emulator ``mp4`` output starts with (bytes shipped in the package).

2 s, 64x64, 2 fps (4 frames): a blue frame, a red square top left and a yellow square that moves
16 px right every frame, so a seek shows a different picture. Constrained Baseline ``avc1``,
``moov`` before ``mdat`` (faststart), no edit list, x264's info SEI stripped: 933 bytes, small
enough that a 1000-byte output still fits it. Made once with ffmpeg 5.1 (Debian 12) and libx264:

    ffmpeg -f lavfi -i "color=c=0x2050c0:size=64x64:rate=2,drawbox=x=0:y=0:w=32:h=32:color=0xe03020:t=fill[bg];
        color=c=0xf0d020:size=16x16:rate=2[sq];[bg][sq]overlay=x=32*t:y=32" -t 2 -c:v libx264 -profile:v baseline
        -crf 30 -pix_fmt yuv420p -bsf:v filter_units=remove_types=6 -movflags +faststart -use_editlist 0
        -map_metadata -1 -fflags +bitexact -flags:v +bitexact sample.mp4

Top-level boxes: ftyp, moov, free (8 bytes, ffmpeg's), mdat. ``mdat`` is last, so the emulator can
append a ``free`` box of padding after it.
"""

from __future__ import annotations

import base64

SAMPLE_MP4: bytes = base64.b64decode(
    "AAAAIGZ0eXBpc29tAAACAGlzb21pc28yYXZjMW1wNDEAAALrbW9vdgAAAGxtdmhkAAAAAAAAAAAAAAAAAAAD6AAAB9AAAQAA"
    "AQAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAgAAAjp0cmFrAAAAXHRraGQAAAADAAAAAAAAAAAAAAABAAAAAAAAB9AAAAAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAAAA"
    "AAAAAAABAAAAAAAAAAAAAAAAAABAAAAAAEAAAABAAAAAAAHWbWRpYQAAACBtZGhkAAAAAAAAAAAAAAAAAABAAAAAgABVxAAA"
    "AAAALWhkbHIAAAAAAAAAAHZpZGUAAAAAAAAAAAAAAABWaWRlb0hhbmRsZXIAAAABgW1pbmYAAAAUdm1oZAAAAAEAAAAAAAAA"
    "AAAAACRkaW5mAAAAHGRyZWYAAAAAAAAAAQAAAAx1cmwgAAAAAQAAAUFzdGJsAAAAuXN0c2QAAAAAAAAAAQAAAKlhdmMxAAAA"
    "AAAAAAEAAAAAAAAAAAAAAAAAAAAAAEAAQABIAAAASAAAAAAAAAABDExhdmMgbGlieDI2NAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "GP//AAAAL2F2Y0MBQsAK/+EAF2dCwArZBCbARAAAAwAEAAADABA8SJkgAQAFaMuBEsgAAAAQcGFzcAAAAAEAAAABAAAAFGJ0"
    "cnQAAAAAAAACKAAAAigAAAAYc3R0cwAAAAAAAAABAAAABAAAIAAAAAAUc3RzcwAAAAAAAAABAAAAAQAAABxzdHNjAAAAAAAA"
    "AAEAAAABAAAABAAAAAEAAAAkc3RzegAAAAAAAAAAAAAABAAAAF8AAAAPAAAADgAAAA4AAAAUc3RjbwAAAAAAAAABAAADGwAA"
    "AD11ZHRhAAAANW1ldGEAAAAAAAAAIWhkbHIAAAAAAAAAAG1kaXJhcHBsAAAAAAAAAAAAAAAACGlsc3QAAAAIZnJlZQAAAJJt"
    "ZGF0AAAAW2WIhAU8RigACMfHAAESGOAAJbUnEYoAAh/xwABNGjgACfzJ1109fH//giCooAAoPeOAAKXMcAAU7ZkGBQABDFjg"
    "AChVHAAEZ2pa5sUAAWT44AAqURwABIDrrrwAAAALQZo4CnicBAcBA54AAAAKQZpUAp4q/AQOaAAAAApBmmAS8Wf8BA5Y"
)
