//! Composing one synthetic image (scene, background, objects) and rendering it.
//!
//! Everything is analytic: a point `(u, v)` of the unit square is sampled for its colour and
//! its labels, so the image (sampled at pixel centres) and the label maps (sampled at label
//! cell centres) agree at any image and label size.

use crate::vocab::*;

/// SplitMix64: small, fast, and ours, so datasets do not change when a crate updates.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

pub type Rgb = [f32; 3];

fn jitter(rng: &mut Rng, base: [u8; 3], amount: f32) -> Rgb {
    base.map(|c| (c as f32 + rng.range(-amount, amount)).clamp(0.0, 255.0))
}

fn named(rng: &mut Rng, name: &str) -> Rgb {
    let base = COLORS
        .iter()
        .find(|(n, _)| *n == name)
        .expect("known colour")
        .1;
    jitter(rng, base, 14.0)
}

fn any_color(rng: &mut Rng) -> Rgb {
    let base = COLORS[rng.below(COLORS.len())].1;
    jitter(rng, base, 14.0)
}

#[derive(Debug, Clone, Copy)]
enum Pattern {
    Plain,
    /// Parallel bands across direction `(cos, sin)`; `duty` is the share of each period on.
    Bands {
        cos: f32,
        sin: f32,
        period: f32,
        duty: f32,
    },
    Chequered {
        period: f32,
    },
    Dots {
        period: f32,
        radius: f32,
    },
    Zigzagged {
        period: f32,
    },
    Grid {
        period: f32,
    },
    Crosshatched {
        period: f32,
    },
    /// Edges of the cells around lattice points (`jitter` 0: a honeycomb; larger: cracks).
    Cells {
        period: f32,
        jitter: f32,
        salt: u64,
    },
    Spiralled {
        cu: f32,
        cv: f32,
        period: f32,
    },
    Noise {
        period: f32,
        level: f32,
        salt: u64,
    },
}

impl Pattern {
    fn random(rng: &mut Rng, texture: Texture) -> Pattern {
        let period = rng.range(0.06, 0.16);
        let bands = |rng: &mut Rng, period: f32, duty: f32, any_angle: bool| {
            let angle = if any_angle {
                rng.range(0.0, std::f32::consts::PI)
            } else {
                std::f32::consts::FRAC_PI_2
            };
            Pattern::Bands {
                cos: angle.cos(),
                sin: angle.sin(),
                period,
                duty,
            }
        };
        match texture {
            Texture::Striped => bands(rng, period, 0.5, true),
            Texture::Banded => {
                let wide = rng.range(0.22, 0.4);
                bands(rng, wide, 0.5, false)
            }
            Texture::Lined => bands(rng, period * 0.7, 0.16, true),
            Texture::Chequered => Pattern::Chequered { period },
            Texture::Dotted => Pattern::Dots {
                period: period * 0.7,
                radius: 0.25,
            },
            Texture::PolkaDotted => Pattern::Dots {
                period: period * 2.2,
                radius: 0.3,
            },
            Texture::Zigzagged => Pattern::Zigzagged { period },
            Texture::Grid => Pattern::Grid { period },
            Texture::Crosshatched => Pattern::Crosshatched {
                period: period * 0.6,
            },
            Texture::Honeycombed => Pattern::Cells {
                period: period * 1.2,
                jitter: 0.0,
                salt: 0,
            },
            Texture::Cracked => Pattern::Cells {
                period: period * 1.6,
                jitter: 0.8,
                salt: rng.next_u64(),
            },
            Texture::Spiralled => Pattern::Spiralled {
                cu: rng.range(0.2, 0.8),
                cv: rng.range(0.2, 0.8),
                period,
            },
            Texture::Flecked => Pattern::Noise {
                period: 0.025,
                level: 0.72,
                salt: rng.next_u64(),
            },
            Texture::Blotchy => Pattern::Noise {
                period: period * 2.0,
                level: 0.55,
                salt: rng.next_u64(),
            },
        }
    }

    /// Whether the pattern's second colour shows at `(u, v)`.
    fn on(&self, u: f32, v: f32) -> bool {
        let frac = |x: f32| x - x.floor();
        match *self {
            Pattern::Plain => false,
            Pattern::Bands {
                cos,
                sin,
                period,
                duty,
            } => frac((u * cos + v * sin) / period) < duty,
            Pattern::Chequered { period } => {
                ((u / period).floor() as i64 + (v / period).floor() as i64) % 2 == 0
            }
            Pattern::Dots { period, radius } => {
                let (du, dv) = (frac(u / period) - 0.5, frac(v / period) - 0.5);
                du * du + dv * dv < radius * radius
            }
            Pattern::Zigzagged { period } => {
                let tri = (frac(u / period) - 0.5).abs() * 2.0;
                frac((v + tri * period * 0.8) / period) < 0.5
            }
            Pattern::Grid { period } => frac(u / period) < 0.18 || frac(v / period) < 0.18,
            Pattern::Crosshatched { period } => {
                frac((u + v) / period) < 0.2 || frac((u - v) / period) < 0.2
            }
            Pattern::Cells {
                period,
                jitter,
                salt,
            } => cell_edge(u / period, v / period, jitter, salt) < 0.09,
            Pattern::Spiralled { cu, cv, period } => {
                let (du, dv) = (u - cu, v - cv);
                let r = (du * du + dv * dv).sqrt();
                let turn = dv.atan2(du) / std::f32::consts::TAU;
                frac(r / period - turn) < 0.45
            }
            Pattern::Noise {
                period,
                level,
                salt,
            } => value_noise(u / period, v / period, salt) > level,
        }
    }
}

/// How far `(x, y)` is from the border between its two nearest lattice points: rows of
/// points one apart, every other row shifted by half, rows `√3/2` apart (a hexagonal
/// lattice, whose cells are hexagons), each point moved by up to `jitter / 2` at random.
fn cell_edge(x: f32, y: f32, jitter: f32, salt: u64) -> f32 {
    let row_height = 0.866;
    let row = (y / row_height).floor() as i64;
    let (mut d1, mut d2) = (f32::INFINITY, f32::INFINITY);
    for r in row - 1..=row + 1 {
        let shift = if r.rem_euclid(2) == 1 { 0.5 } else { 0.0 };
        let col = (x - shift).floor() as i64;
        for c in col - 1..=col + 2 {
            let (mut px, mut py) = (c as f32 + shift, r as f32 * row_height);
            if jitter > 0.0 {
                px += (lattice(c, r, salt) - 0.5) * jitter;
                py += (lattice(c, r, salt ^ 0x5555) - 0.5) * jitter;
            }
            let d = ((x - px).powi(2) + (y - py).powi(2)).sqrt();
            if d < d1 {
                d2 = d1;
                d1 = d;
            } else if d < d2 {
                d2 = d;
            }
        }
    }
    (d2 - d1) / 2.0
}

fn lattice(x: i64, y: i64, salt: u64) -> f32 {
    let mut rng = Rng::new(
        salt,
        (x as u64).wrapping_mul(0x9E37_79B9) ^ (y as u64) << 32,
    );
    rng.unit()
}

fn value_noise(x: f32, y: f32, salt: u64) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let (ix, iy) = (x0 as i64, y0 as i64);
    let a = lattice(ix, iy, salt) * (1.0 - sx) + lattice(ix + 1, iy, salt) * sx;
    let b = lattice(ix, iy + 1, salt) * (1.0 - sx) + lattice(ix + 1, iy + 1, salt) * sx;
    a * (1.0 - sy) + b * sy
}

struct Background {
    top: Rgb,
    bottom: Rgb,
    split: f32,
    pattern: Pattern,
    pattern_color: Rgb,
    overlay: Pattern,
    overlay_color: Rgb,
}

impl Background {
    fn color(&self, u: f32, v: f32) -> Rgb {
        if self.overlay.on(u, v) {
            self.overlay_color
        } else if self.pattern.on(u, v) {
            self.pattern_color
        } else if v < self.split {
            self.top
        } else {
            self.bottom
        }
    }
}

/// A labelled slot of an object: its colour, material and parts.
#[derive(Clone, Copy)]
struct Slot {
    color: Rgb,
    material: Material,
}

struct Object {
    kind: Kind,
    cx: f32,
    cy: f32,
    hx: f32,
    hy: f32,
    slots: [Slot; 3],
}

/// What lies at a point of an object.
struct Hit {
    slot: usize,
    part: Option<Part>,
    /// A part lying on top of another part (a door on a wall): a second part layer.
    overlay_part: Option<Part>,
    x: f32,
    y: f32,
}

fn in_star(x: f32, y: f32) -> bool {
    let r = (x * x + y * y).sqrt();
    let sector = std::f32::consts::TAU / 5.0;
    let angle = y.atan2(x) + std::f32::consts::FRAC_PI_2;
    let t = ((angle / sector).rem_euclid(1.0) - 0.5).abs() * 2.0;
    r <= 0.42 + 0.58 * (1.0 - t)
}

impl Object {
    fn hit(&self, u: f32, v: f32) -> Option<Hit> {
        let (x, y) = ((u - self.cx) / self.hx, (v - self.cy) / self.hy);
        if x.abs() > 1.0 || y.abs() > 1.0 {
            return None;
        }
        let whole = |inside: bool| {
            inside.then_some(Hit {
                slot: 0,
                part: None,
                overlay_part: None,
                x,
                y,
            })
        };
        let part = |slot: usize, part: Part, overlay: Option<Part>| {
            Some(Hit {
                slot,
                part: Some(part),
                overlay_part: overlay,
                x,
                y,
            })
        };
        match self.kind {
            Kind::Ball => whole(x * x + y * y <= 1.0),
            Kind::Box => whole(x.abs() <= 0.85 && y.abs() <= 0.85),
            Kind::Tent => whole(y <= 0.8 && x.abs() <= 0.95 * (y + 0.95) / 1.75),
            Kind::Kite => whole(x.abs() + y.abs() <= 1.0),
            Kind::Ring => {
                let r2 = x * x + y * y;
                whole((0.3..=1.0).contains(&r2))
            }
            Kind::Cross => whole((x.abs() <= 0.3) || (y.abs() <= 0.3)),
            Kind::Star => whole(in_star(x, y)),
            Kind::Nut => whole((x.abs() * 0.866 + y.abs() * 0.5).max(y.abs()) <= 0.9),
            Kind::Egg => whole((x / 0.7).powi(2) + y * y <= 1.0),
            Kind::Moon => whole(x * x + y * y <= 1.0 && (x - 0.45).powi(2) + y * y > 0.64),
            Kind::Paper => whole(x.abs() <= 0.7 && y.abs() <= 0.95),
            Kind::House => {
                if x.abs() <= 0.7 && (0.0..=0.95).contains(&y) {
                    let door = x.abs() <= 0.2 && y >= 0.4;
                    part(0, Part::Wall, door.then_some(Part::Door))
                } else if (-0.95..0.0).contains(&y) && x.abs() <= 0.9 * (y + 0.95) / 0.95 {
                    part(1, Part::Roof, None)
                } else {
                    None
                }
            }
            Kind::Car => {
                let wheel = (x.abs() - 0.55).powi(2) + (y - 0.5).powi(2) <= 0.09;
                if wheel {
                    part(1, Part::Wheel, None)
                } else if (x.abs() <= 0.95 && (-0.25..=0.5).contains(&y))
                    || (x.abs() <= 0.5 && (-0.8..-0.25).contains(&y))
                {
                    let window = x.abs() <= 0.4 && (-0.7..=-0.32).contains(&y);
                    if window {
                        // The window is glass lying on the body: both part layers.
                        Some(Hit {
                            slot: 2,
                            part: Some(Part::Body),
                            overlay_part: Some(Part::Window),
                            x,
                            y,
                        })
                    } else {
                        part(0, Part::Body, None)
                    }
                } else {
                    None
                }
            }
            Kind::Tree => {
                if x * x + (y + 0.3).powi(2) <= 0.49 {
                    part(0, Part::Crown, None)
                } else if x.abs() <= 0.15 && y >= 0.2 {
                    part(1, Part::Trunk, None)
                } else {
                    None
                }
            }
            Kind::Flag => {
                if (-0.8..=-0.65).contains(&x) {
                    part(1, Part::Pole, None)
                } else if x > -0.65 && x <= 0.85 && y <= -0.1 {
                    part(0, Part::Cloth, None)
                } else {
                    None
                }
            }
        }
    }
}

fn shade(slot: &Slot, hit: &Hit, u: f32, v: f32, size: f32, background: Rgb) -> Rgb {
    let scale = |c: Rgb, k: f32| c.map(|x| (x * k).clamp(0.0, 255.0));
    let mix = |a: Rgb, b: Rgb, t: f32| [0, 1, 2].map(|i| a[i] * (1.0 - t) + b[i] * t);
    match slot.material {
        Material::Plastic => slot.color,
        Material::Metal => {
            let highlight = if (hit.x - 0.35).abs() < 0.1 { 0.3 } else { 0.0 };
            scale(slot.color, 0.7 + 0.3 * (1.0 - hit.y.abs()) + highlight)
        }
        Material::Wood => scale(
            slot.color,
            0.82 + 0.18 * (40.0 * v + 3.0 * (12.0 * u).sin()).sin(),
        ),
        Material::Fabric => {
            let cell = ((u * size / 2.0).floor() as i64 + (v * size / 2.0).floor() as i64) % 2;
            scale(slot.color, if cell == 0 { 0.86 } else { 1.12 })
        }
        // Matte: a little darker than its colour, with no highlight.
        Material::Rubber => scale(slot.color, 0.8),
        Material::Glass => mix(background, [200.0, 225.0, 245.0], 0.55),
        // Pale, with one corner folded over (a little darker).
        Material::Paper => {
            let pale = mix(slot.color, [245.0, 245.0, 240.0], 0.6);
            if hit.x + hit.y > 1.0 {
                scale(pale, 0.85)
            } else {
                pale
            }
        }
    }
}

/// Everything known at one point: its colour and its pixel-level labels (0 for none).
pub struct Sample {
    pub rgb: Rgb,
    pub object: u16,
    pub part: u16,
    pub overlay_part: u16,
    pub material: u16,
}

/// One composed image: its scene, textures and objects.
pub struct Composition {
    /// The scene label; `None` for a random layout that no scene describes (label 0).
    pub scene: Option<Scene>,
    /// Texture labels of the background; empty for a plain one.
    pub textures: Vec<Texture>,
    background: Background,
    objects: Vec<Object>,
    size: f32,
}

/// What makes a scene: its background (top colour, bottom colour, where they meet), the
/// objects it is likely to hold, and where they stand (the range of their centres' `v`).
///
/// Backgrounds are muted, as in photographs (a pale sky, a dull lawn, a grey road), and
/// mostly take the unsaturated colour names; saturated colours come from objects,
/// patterns and the unnamed layouts. A colour name on most pixels of most images could
/// not be detected at all (see [`crate::vocab::SCENES`]): this keeps each of them rarer.
struct Layout {
    top: &'static [[u8; 3]],
    bottom: &'static [[u8; 3]],
    split: (f32, f32),
    objects: &'static [Kind],
    rows: (f32, f32),
}

const PALE_SKY: [u8; 3] = [172, 196, 228];
const ROAD: [u8; 3] = [96, 96, 102];
const LAWN: [u8; 3] = [108, 134, 88];
const NIGHT: [u8; 3] = [26, 26, 44];
const FLOOR: [u8; 3] = [142, 102, 72];
const SAND: [u8; 3] = [178, 166, 132];

fn layout(scene: Scene) -> Layout {
    use Kind::*;
    let l = |top, bottom, split, objects, rows| Layout {
        top,
        bottom,
        split,
        objects,
        rows,
    };
    match scene {
        Scene::Street => l(
            &[PALE_SKY],
            &[ROAD],
            (0.3, 0.45),
            &[Car, House, Box, Cross],
            (0.55, 0.85),
        ),
        Scene::Park => l(
            &[PALE_SKY],
            &[LAWN],
            (0.2, 0.45),
            &[Tree, Ball, Flag, Kite],
            (0.3, 0.85),
        ),
        Scene::Sky => l(
            &[PALE_SKY, [125, 155, 220]],
            &[PALE_SKY],
            (0.6, 0.9),
            &[Kite, Star, Moon, Flag],
            (0.1, 0.9),
        ),
        Scene::Night => l(
            &[NIGHT],
            &[[44, 38, 52]],
            (0.75, 0.9),
            &[Star, Moon],
            (0.1, 0.6),
        ),
        Scene::Playroom => l(
            &[
                [232, 204, 212],
                [216, 206, 232],
                [236, 230, 214],
                [236, 216, 192],
            ],
            &[FLOOR],
            (0.6, 0.8),
            &[Ball, Box, Ring, Nut, Egg, Paper, Cross],
            (0.5, 0.85),
        ),
        Scene::Campsite => l(
            &[[122, 142, 102]],
            &[[132, 112, 82]],
            (0.35, 0.6),
            &[Tent, Tree, Flag],
            (0.45, 0.8),
        ),
        Scene::Beach => l(
            &[PALE_SKY],
            &[SAND],
            (0.35, 0.55),
            &[Ball, Egg, Tent, Star],
            (0.55, 0.85),
        ),
        Scene::Desert => l(
            &[[214, 206, 196]],
            &[[150, 104, 62]],
            (0.25, 0.4),
            &[Tent, Moon, Box],
            (0.45, 0.8),
        ),
        Scene::Office => l(
            &[[226, 226, 220]],
            &[[150, 150, 152]],
            (0.55, 0.7),
            &[Paper, Box, Ring, Cross],
            (0.3, 0.8),
        ),
        Scene::Forest => l(
            &[[86, 116, 80]],
            &[[110, 90, 70]],
            (0.7, 0.85),
            &[Tree],
            (0.3, 0.7),
        ),
        Scene::Snowfield => l(
            &[PALE_SKY],
            &[[240, 240, 245]],
            (0.3, 0.5),
            &[Tree, House, Flag],
            (0.45, 0.8),
        ),
        Scene::Garage => l(
            &[[140, 140, 146]],
            &[[52, 52, 58]],
            (0.6, 0.75),
            &[Car, Box, Nut, Ring],
            (0.5, 0.85),
        ),
    }
}

impl Composition {
    pub fn random(rng: &mut Rng, image_size: u32) -> Composition {
        // One image in eight has a layout of its own that no scene names.
        let scene = (!rng.chance(0.125)).then(|| rng.pick(&SCENES));
        let (top, bottom, split, objects, rows) = match scene {
            Some(scene) => {
                let layout = layout(scene);
                let top = rng.pick(layout.top);
                let bottom = rng.pick(layout.bottom);
                let split = rng.range(layout.split.0, layout.split.1);
                (
                    jitter(rng, top, 10.0),
                    jitter(rng, bottom, 10.0),
                    split,
                    layout.objects,
                    layout.rows,
                )
            }
            None => (
                any_color(rng),
                any_color(rng),
                rng.range(0.2, 0.8),
                &KINDS[..],
                (0.15, 0.85),
            ),
        };
        // Most backgrounds are plain: each texture labels a few percent of the images.
        let mut textures = Vec::new();
        let pattern = if rng.chance(0.45) {
            let t = rng.pick(&TEXTURES);
            textures.push(t);
            Pattern::random(rng, t)
        } else {
            Pattern::Plain
        };
        let overlay = if !textures.is_empty() && rng.chance(0.2) {
            let t = rng.pick(&TEXTURES);
            if textures.contains(&t) {
                Pattern::Plain
            } else {
                textures.push(t);
                Pattern::random(rng, t)
            }
        } else {
            Pattern::Plain
        };
        let background = Background {
            top,
            bottom,
            split,
            pattern,
            pattern_color: any_color(rng),
            overlay,
            overlay_color: any_color(rng),
        };
        let n_objects = [0, 1, 1, 2, 2, 3, 3, 4][rng.below(8)];
        let objects = (0..n_objects)
            .map(|_| {
                let kind = if rng.chance(0.8) {
                    rng.pick(objects)
                } else {
                    rng.pick(&KINDS)
                };
                random_object(rng, kind, rows)
            })
            .collect();
        Composition {
            scene,
            textures,
            background,
            objects,
            size: image_size as f32,
        }
    }

    pub fn sample(&self, u: f32, v: f32) -> Sample {
        let background = self.background.color(u, v);
        let mut out = Sample {
            rgb: background,
            object: 0,
            part: 0,
            overlay_part: 0,
            material: 0,
        };
        // Later objects are in front: the last hit wins.
        for object in &self.objects {
            if let Some(hit) = object.hit(u, v) {
                let slot = &object.slots[hit.slot];
                out.rgb = shade(slot, &hit, u, v, self.size, background);
                out.object = object_label(object.kind);
                out.part = hit.part.map_or(0, part_label);
                out.overlay_part = hit.overlay_part.map_or(0, part_label);
                out.material = material_label(slot.material);
            }
        }
        out
    }
}

/// An object of `kind` at a random size and place, its centre's `v` within `rows` (and
/// the object at least mostly inside the image).
fn random_object(rng: &mut Rng, kind: Kind, rows: (f32, f32)) -> Object {
    let h = rng.range(0.1, 0.28);
    let aspect = rng.range(0.8, 1.25);
    let (hx, hy) = (h * aspect, h);
    let cx = rng.range(hx * 0.6, 1.0 - hx * 0.6);
    let lo = rows.0.max(hy * 0.6);
    let hi = rows.1.min(1.0 - hy * 0.6).max(lo);
    let cy = rng.range(lo, hi);
    let fill = |rng: &mut Rng| Slot {
        color: any_color(rng),
        material: rng.pick(&FILL_MATERIALS),
    };
    // No part has a colour of its own (wheels and crowns come in several), so that what
    // names a part is its shape and place, not a colour a low layer could match.
    let of = |rng: &mut Rng, names: &[&str], material: Material| {
        let name = rng.pick(names);
        Slot {
            color: named(rng, name),
            material,
        }
    };
    let slots = match kind {
        Kind::Paper => {
            [Slot {
                color: any_color(rng),
                material: Material::Paper,
            }; 3]
        }
        Kind::Car => [
            fill(rng),
            Slot {
                color: any_color(rng),
                material: Material::Rubber,
            },
            Slot {
                color: named(rng, "white-c"),
                material: Material::Glass,
            },
        ],
        Kind::Tree => {
            let crown = [
                "green-c", "green-c", "orange-c", "yellow-c", "red-c", "brown-c",
            ];
            let material = rng.pick(&[Material::Plastic, Material::Fabric]);
            [
                of(rng, &crown, material),
                of(rng, &["brown-c", "grey-c", "black-c"], Material::Wood),
                fill(rng),
            ]
        }
        Kind::Flag => [
            Slot {
                color: any_color(rng),
                material: Material::Fabric,
            },
            of(
                rng,
                &["grey-c", "white-c", "black-c", "yellow-c"],
                Material::Metal,
            ),
            fill(rng),
        ],
        _ => [fill(rng), fill(rng), fill(rng)],
    };
    Object {
        kind,
        cx,
        cy,
        hx,
        hy,
        slots,
    }
}

/// The Broden colour name nearest to an RGB value (an index into [`COLORS`]).
pub fn nearest_color(rgb: Rgb) -> usize {
    let mut best = (f32::INFINITY, 0);
    for (i, (_, c)) in COLORS.iter().enumerate() {
        let d: f32 = (0..3).map(|k| (rgb[k] - c[k] as f32).powi(2)).sum();
        if d < best.0 {
            best = (d, i);
        }
    }
    best.1
}
