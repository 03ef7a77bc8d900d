//! What the preprocessing found in an image posted to `POST /api/predict`, as the answer's
//! `preprocessing` object (see [`crate::digit::Input`] for each value's meaning).
use crate::digit::Input;
use serde_json::{json, Value};

/// `{"width", "height", "polarity", "reduce", "paper", "ink", "noise", "specks", "geometry"}`.
pub fn describe(input: &Input) -> Value {
    json!({
        "width": input.width,
        "height": input.height,
        "polarity": input.polarity.name(),
        "reduce": input.reduce,
        "paper": input.paper,
        "ink": input.ink,
        "noise": input.noise,
        "specks": input.specks,
        "geometry": input.geometry,
    })
}
