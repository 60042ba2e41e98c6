//! The labels of the synthetic world and their numbers.
//!
//! Numbers are fixed by this vocabulary (colours first, as in Broden), so a label keeps its
//! number whatever the seed or the number of images. `paper` is both an object and a
//! material; which one it is scored in follows from the coverages the data gives it.

pub const CATEGORIES: [&str; 6] = ["color", "object", "part", "material", "scene", "texture"];
pub const COLOR: usize = 0;
pub const OBJECT: usize = 1;
pub const PART: usize = 2;
pub const MATERIAL: usize = 3;
pub const SCENE: usize = 4;
pub const TEXTURE: usize = 5;

/// The eleven Broden colour names and the RGB each stands for.
pub const COLORS: [(&str, [u8; 3]); 11] = [
    ("black-c", [20, 20, 20]),
    ("blue-c", [40, 70, 200]),
    ("brown-c", [120, 70, 30]),
    ("grey-c", [128, 128, 128]),
    ("green-c", [50, 160, 60]),
    ("orange-c", [240, 140, 30]),
    ("pink-c", [240, 150, 190]),
    ("purple-c", [130, 50, 160]),
    ("red-c", [210, 30, 30]),
    ("white-c", [235, 235, 235]),
    ("yellow-c", [240, 220, 40]),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ball,
    Box,
    Tent,
    Kite,
    Ring,
    Cross,
    Star,
    Nut,
    Egg,
    Moon,
    Paper,
    House,
    Car,
    Tree,
    Flag,
}

pub const KINDS: [Kind; 15] = [
    Kind::Ball,
    Kind::Box,
    Kind::Tent,
    Kind::Kite,
    Kind::Ring,
    Kind::Cross,
    Kind::Star,
    Kind::Nut,
    Kind::Egg,
    Kind::Moon,
    Kind::Paper,
    Kind::House,
    Kind::Car,
    Kind::Tree,
    Kind::Flag,
];

const OBJECT_NAMES: [&str; 15] = [
    "ball", "box", "tent", "kite", "ring", "cross", "star", "nut", "egg", "moon", "paper", "house",
    "car", "tree", "flag",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Wall,
    Roof,
    Door,
    Body,
    Wheel,
    Window,
    Trunk,
    Crown,
    Pole,
    Cloth,
}

const PART_NAMES: [&str; 10] = [
    "wall", "roof", "door", "body", "wheel", "window", "trunk", "crown", "pole", "cloth",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Material {
    Plastic,
    Metal,
    Wood,
    Fabric,
    Rubber,
    Glass,
    Paper,
}

/// Materials an object may be made of (rubber and glass belong to car parts only).
pub const FILL_MATERIALS: [Material; 5] = [
    Material::Plastic,
    Material::Metal,
    Material::Wood,
    Material::Fabric,
    Material::Paper,
];

const MATERIAL_NAMES: [&str; 6] = ["plastic", "metal", "wood", "fabric", "rubber", "glass"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scene {
    Street,
    Park,
    Sky,
    Night,
    Playroom,
    Campsite,
    Beach,
    Desert,
    Office,
    Forest,
    Snowfield,
    Garage,
}

/// Twelve scenes, so that each labels well under an eighth of the images: an image-level
/// label on more than `q_top / 0.04` of the images could never give a unit an IoU of 0.04
/// (its mask covers `q_top` of all pixels, the label whole images).
pub const SCENES: [Scene; 12] = [
    Scene::Street,
    Scene::Park,
    Scene::Sky,
    Scene::Night,
    Scene::Playroom,
    Scene::Campsite,
    Scene::Beach,
    Scene::Desert,
    Scene::Office,
    Scene::Forest,
    Scene::Snowfield,
    Scene::Garage,
];

const SCENE_NAMES: [&str; 12] = [
    "street-s",
    "park-s",
    "sky-s",
    "night-s",
    "playroom-s",
    "campsite-s",
    "beach-s",
    "desert-s",
    "office-s",
    "forest-s",
    "snowfield-s",
    "garage-s",
];

/// Background patterns, named after textures of the Describable Textures Dataset that
/// Broden's texture category comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Texture {
    Striped,
    Banded,
    Lined,
    Chequered,
    Dotted,
    PolkaDotted,
    Zigzagged,
    Grid,
    Crosshatched,
    Honeycombed,
    Cracked,
    Spiralled,
    Flecked,
    Blotchy,
}

pub const TEXTURES: [Texture; 14] = [
    Texture::Striped,
    Texture::Banded,
    Texture::Lined,
    Texture::Chequered,
    Texture::Dotted,
    Texture::PolkaDotted,
    Texture::Zigzagged,
    Texture::Grid,
    Texture::Crosshatched,
    Texture::Honeycombed,
    Texture::Cracked,
    Texture::Spiralled,
    Texture::Flecked,
    Texture::Blotchy,
];

const TEXTURE_NAMES: [&str; 14] = [
    "striped",
    "banded",
    "lined",
    "chequered",
    "dotted",
    "polka-dotted",
    "zigzagged",
    "grid",
    "crosshatched",
    "honeycombed",
    "cracked",
    "spiralled",
    "flecked",
    "blotchy",
];

const OBJECT_BASE: u16 = 1 + COLORS.len() as u16;
const PART_BASE: u16 = OBJECT_BASE + OBJECT_NAMES.len() as u16;
const MATERIAL_BASE: u16 = PART_BASE + PART_NAMES.len() as u16;
const SCENE_BASE: u16 = MATERIAL_BASE + MATERIAL_NAMES.len() as u16;
const TEXTURE_BASE: u16 = SCENE_BASE + SCENE_NAMES.len() as u16;
/// One more than the largest label number.
pub const N_LABELS: usize = TEXTURE_BASE as usize + TEXTURE_NAMES.len();

pub fn color_label(index: usize) -> u16 {
    1 + index as u16
}

pub fn object_label(kind: Kind) -> u16 {
    OBJECT_BASE + kind as u16
}

pub fn part_label(part: Part) -> u16 {
    PART_BASE + part as u16
}

pub fn material_label(material: Material) -> u16 {
    match material {
        Material::Paper => object_label(Kind::Paper),
        other => MATERIAL_BASE + other as u16,
    }
}

pub fn scene_label(scene: Scene) -> u16 {
    SCENE_BASE + scene as u16
}

pub fn texture_label(texture: Texture) -> u16 {
    TEXTURE_BASE + texture as u16
}

/// The name of every label number (`""` for 0).
pub fn label_name(number: u16) -> &'static str {
    let n = number;
    match n {
        0 => "",
        n if n < OBJECT_BASE => COLORS[(n - 1) as usize].0,
        n if n < PART_BASE => OBJECT_NAMES[(n - OBJECT_BASE) as usize],
        n if n < MATERIAL_BASE => PART_NAMES[(n - PART_BASE) as usize],
        n if n < SCENE_BASE => MATERIAL_NAMES[(n - MATERIAL_BASE) as usize],
        n if n < TEXTURE_BASE => SCENE_NAMES[(n - SCENE_BASE) as usize],
        n => TEXTURE_NAMES[(n - TEXTURE_BASE) as usize],
    }
}

/// The categories a label can occur in, in category order.
pub fn label_categories(number: u16) -> &'static [usize] {
    match number {
        0 => &[],
        n if n == object_label(Kind::Paper) => &[OBJECT, MATERIAL],
        n if n < OBJECT_BASE => &[COLOR],
        n if n < PART_BASE => &[OBJECT],
        n if n < MATERIAL_BASE => &[PART],
        n if n < SCENE_BASE => &[MATERIAL],
        n if n < TEXTURE_BASE => &[SCENE],
        _ => &[TEXTURE],
    }
}
