"""Draws assets/designs/poster.png, the design graphic the README and the demo decompose:
a gradient background, a photograph (the bundled coffee sample, CC0), a stripe, a circle, a
badge with a hole, and three lines of text in different colours and sizes (DejaVu Sans, whose
licence allows embedding its glyphs in images). Run with Pillow: python make_poster.py"""
import os

from PIL import Image, ImageDraw, ImageFont

here = os.path.dirname(os.path.abspath(__file__))
W, H = 800, 560
img = Image.new("RGB", (W, H))
px = img.load()
for y in range(H):
    for x in range(W):
        t = x / (W - 1)
        px[x, y] = (int(250 - 40 * t), int(236 - 30 * t), int(220 + 20 * t))
draw = ImageDraw.Draw(img)
photo = Image.open(os.path.join(here, "..", "samples", "coffee.png")).convert("RGB").resize((300, 200), Image.LANCZOS)
img.paste(photo, (450, 60))
draw.rectangle((0, 300, W, 340), fill=(233, 30, 99))
draw.ellipse((60, 380, 200, 520), fill=(33, 150, 243))
draw.ellipse((100, 420, 160, 480), fill=(250, 236, 220))
draw.rounded_rectangle((600, 400, 760, 500), radius=24, outline=(46, 125, 50), width=6)
font = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
draw.text((40, 60), "45", font=ImageFont.truetype(font, 120), fill=(26, 26, 26))
draw.text((40, 200), "photo shoot ideas", font=ImageFont.truetype(font, 40), fill=(120, 40, 160))
draw.text((240, 420), "SPRING SALE", font=ImageFont.truetype(font, 48), fill=(255, 120, 0))
img.save(os.path.join(here, "poster.png"))
