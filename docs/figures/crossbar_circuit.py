#!/usr/bin/python3
"""Draws docs/figures/crossbar_circuit.svg: the crossbar circuit the solver models (3 x 3 shown).

    /usr/bin/python3 docs/figures/crossbar_circuit.py   (writes the SVG next to this script)

Plain SVG text, no dependencies.  Same topology as include/xb_solve.h and xbar_spice.py: sources V_i
through r_driver into row node (i,0); row wire segments r_wire; cell G_ij from row node (i,j) to column
node (i,j); column wire segments r_wire; column node (n-1,j) through r_sense to ground, current I_j.
"""
import os

N, M = 3, 3
X0, DX, Y0, DY, OFF = 250, 175, 70, 130, 62    # row node (i,j) at (X0 + j DX, Y0 + i DY); column node +OFF
W, H = X0 + (M - 1) * DX + OFF + 110, Y0 + (N - 1) * DY + OFF + 150
out = []


def line(x1, y1, x2, y2, cls="w"):
    out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" class="{cls}"/>')


def text(x, y, s, cls="t", anchor="middle"):
    out.append(f'<text x="{x:.1f}" y="{y:.1f}" class="{cls}" text-anchor="{anchor}">{s}</text>')


def resistor(x1, y1, x2, y2, label=None, lx=0, ly=0, cls="r", at=0.5):
    """A zigzag resistor between two points (straight leads), its body centred at fraction `at`."""
    dx, dy = x2 - x1, y2 - y1
    L = (dx * dx + dy * dy) ** 0.5
    ux, uy = dx / L, dy / L
    px, py = -uy, ux
    body = min(44.0, 0.6 * L)
    a = at * L - body / 2
    pts = [(x1, y1), (x1 + ux * a, y1 + uy * a)]
    for k in range(6):
        t = a + body * (k + 0.5) / 6
        s = 7 if k % 2 == 0 else -7
        pts.append((x1 + ux * t + px * s, y1 + uy * t + py * s))
    pts += [(x1 + ux * (a + body), y1 + uy * (a + body)), (x2, y2)]
    out.append('<polyline points="' + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + f'" class="{cls}"/>')
    if label:
        text(x1 + ux * at * L + lx, y1 + uy * at * L + ly, label, "l")


def dot(x, y, cls="n"):
    out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.6" class="{cls}"/>')


def ground(x, y):
    line(x, y, x, y + 8)
    for k, w in enumerate((16, 10, 4)):
        line(x - w / 2, y + 8 + 5 * k, x + w / 2, y + 8 + 5 * k)


def source(x, y, label):
    """Voltage source to ground, its + terminal at (x, y)."""
    out.append(f'<circle cx="{x:.1f}" cy="{y + 28:.1f}" r="13" class="w" fill="none"/>')
    text(x, y + 25, "+", "sg")
    text(x, y + 37, "&#8722;", "sg")
    line(x, y, x, y + 15)
    line(x, y + 41, x, y + 52)
    ground(x, y + 52)
    text(x - 20, y + 32, label, "v", "end")


row = lambda i, j: (X0 + j * DX, Y0 + i * DY)
col = lambda i, j: (X0 + j * DX + OFF, Y0 + i * DY + OFF)

for i in range(N):
    x, y = row(i, 0)
    sx = X0 - 150
    source(sx, y, f"V<tspan class='sub'>{i}</tspan>")
    resistor(sx, y, x, y, "r<tspan class='sub'>driver</tspan>", 0, -12, "r d")
    for j in range(M):
        xr, yr = row(i, j)
        xc, yc = col(i, j)
        if j > 0:
            resistor(row(i, j - 1)[0], yr, xr, yr, "r<tspan class='sub'>wire</tspan>" if (i, j) == (0, 1) else None, 0, -12, "r w", 0.66)
        resistor(xr, yr, xc, yc, f"G<tspan class='sub'>{i}{j}</tspan>", 24, -6, "r g")
        if i > 0:
            resistor(xc, col(i - 1, j)[1], xc, yc, "r<tspan class='sub'>wire</tspan>" if (i, j) == (1, 0) else None, -30, 4, "r w", 0.25)
        dot(xr, yr)
        dot(xc, yc, "n c")
    # open end of the row wire
    text(row(i, M - 1)[0] + 24, row(i, M - 1)[1] + 4, "open", "o", "start")
for j in range(M):
    xc, yc = col(N - 1, j)
    yb = yc + 78
    resistor(xc, yc, xc, yb, "r<tspan class='sub'>sense</tspan>", -34, 4, "r s")
    ground(xc, yb)
    out.append(f'<path d="M{xc + 16:.1f},{yc + 22:.1f} l0,30 m-4,-8 l4,8 l4,-8" class="a"/>')
    text(xc + 25, yc + 44, f"I<tspan class='sub'>{j}</tspan>", "v", "start")
    text(xc, Y0 - 38, "column " + str(j), "h")
for i in range(N):
    text(row(i, 0)[0] - 8, row(i, 0)[1] + 20, f"({i},0)", "k", "end")
text(row(1, 1)[0] - 8, row(1, 1)[1] + 20, "(1,1)", "k", "end")
text(col(1, 1)[0] + 8, col(1, 1)[1] - 6, "(1,1)", "k", "start")
# legend
lx, ly = 22, H - 40
out.append(f'<circle cx="{lx}" cy="{ly}" r="3.6" class="n"/>')
text(lx + 10, ly + 4, "row node (i,j)", "k", "start")
out.append(f'<circle cx="{lx + 130}" cy="{ly}" r="3.6" class="n c"/>')
text(lx + 140, ly + 4, "column node (i,j)", "k", "start")
text(lx, ly + 24, "I = V E: E (rows x cols) is the tile's effective matrix; E = G when every r is 0", "k", "start")

svg = f'''<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">
<style>
 .w,.r {{ stroke:#222; stroke-width:1.6; fill:none; }}
 .d {{ stroke:#7a3b00; }} .s {{ stroke:#7a3b00; }} .g {{ stroke:#0b5ea8; stroke-width:1.8; }} .r.w {{ stroke:#222; }}
 .n {{ fill:#222; }} .n.c {{ fill:#fff; stroke:#0b5ea8; stroke-width:1.8; }}
 .a {{ stroke:#b00020; stroke-width:1.6; fill:none; }}
 text {{ font-family:Helvetica,Arial,sans-serif; }}
 .l {{ font-size:13px; fill:#333; }} .v {{ font-size:15px; fill:#111; font-style:italic; }}
 .sg {{ font-size:12px; }} .h {{ font-size:13px; fill:#555; }} .k {{ font-size:11px; fill:#555; }}
 .o {{ font-size:11px; fill:#888; font-style:italic; }} .sub {{ font-size:10px; baseline-shift:sub; }}
</style>
<rect width="100%" height="100%" fill="#fff"/>
{chr(10).join(o for o in out if o)}
</svg>
'''
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crossbar_circuit.svg")
with open(path, "w") as f:
    f.write(svg)
print(f"wrote {path} ({len(svg)} bytes)")
