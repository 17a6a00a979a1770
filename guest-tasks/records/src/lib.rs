//! The `records` task: conversion coverage, one function per kind of component-model value
//! (records, enums, variants, flags, options, tuples, lists, chars, floats).

// The export shim that wit-bindgen generates for `describe` takes the flattened `person`: 9 core
// parameters.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({ path: "../../wit", world: "records" });

struct Records;

impl Guest for Records {
    fn describe(p: Person) -> Summary {
        let initials = p
            .name
            .split_whitespace()
            .filter_map(|part| part.chars().next())
            .flat_map(char::to_uppercase)
            .collect();
        let role_title = match p.role {
            Role::Student => "Student",
            Role::Teacher => "Teacher",
            Role::Admin => "Admin",
        };
        Summary {
            greeting: format!("Hello, {}!", p.name),
            adult: p.age >= 18,
            initials,
            tag_count: u32::try_from(p.tags.len()).unwrap_or(u32::MAX),
            role_title: role_title.to_string(),
        }
    }

    fn area(s: Shape) -> f64 {
        match s {
            Shape::Circle(r) => std::f64::consts::PI * r * r,
            Shape::Rectangle((w, h)) => w * h,
            Shape::Point => 0.0,
        }
    }

    fn grant(have: Permissions, extra: Permissions) -> Permissions {
        have | extra
    }

    fn first_char(s: String) -> Option<char> {
        s.chars().next()
    }

    fn minmax(values: Vec<f64>) -> Option<(f64, f64)> {
        let (&first, rest) = values.split_first()?;
        // f64::min and f64::max ignore a NaN operand, so NaNs are skipped unless all are NaN.
        Some(
            rest.iter()
                .fold((first, first), |(lo, hi), &v| (lo.min(v), hi.max(v))),
        )
    }
}

export!(Records);
