//! WIT values through real components: records, enums, variants, flags, options, lists, chars,
//! with Rust types on the caller's side.

use serde::{Deserialize, Serialize};
use wasmpool_artifacts::{HELLO, RECORDS, WORDS};

use crate::support::{pool, task};

#[derive(Debug, Serialize)]
enum Role {
    Student,
    Teacher,
    #[allow(dead_code)]
    Admin,
}

#[derive(Debug, Serialize)]
struct Person {
    name: String,
    age: u8,
    email: Option<String>,
    role: Role,
    tags: Vec<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Summary {
    greeting: String,
    adult: bool,
    initials: String,
    tag_count: u32,
    role_title: String,
}

#[derive(Debug, Serialize)]
enum Shape {
    Circle(f64),
    Rectangle((f64, f64)),
    Point,
}

#[derive(Debug, Deserialize, PartialEq)]
struct WordFreq {
    word: String,
    count: u32,
}

#[test]
fn records_and_enums_map_to_rust_structs() {
    let pool = pool(2);
    let describe = task(RECORDS, "describe");
    let people = vec![
        Person {
            name: "ada lovelace".into(),
            age: 36,
            email: None,
            role: Role::Teacher,
            tags: vec!["math".into()],
        },
        Person {
            name: "Alan Turing".into(),
            age: 17,
            email: Some("a@t".into()),
            role: Role::Student,
            tags: vec![],
        },
    ];
    let summaries: Vec<Summary> = pool.map(&describe, &people).unwrap();
    assert_eq!(
        summaries[0],
        Summary {
            greeting: "Hello, ada lovelace!".into(),
            adult: true,
            initials: "AL".into(),
            tag_count: 1,
            role_title: "Teacher".into()
        }
    );
    assert!(!summaries[1].adult);
    assert_eq!(summaries[1].role_title, "Student");
}

#[test]
fn variants_flags_options_and_chars() {
    let pool = pool(1);
    let area = task(RECORDS, "area");
    let areas: Vec<f64> = pool
        .map(
            &area,
            [
                Shape::Circle(1.0),
                Shape::Rectangle((2.0, 3.0)),
                Shape::Point,
            ],
        )
        .unwrap();
    assert!((areas[0] - std::f64::consts::PI).abs() < 1e-12);
    assert_eq!(&areas[1..], &[6.0, 0.0]);

    let grant = task(RECORDS, "grant");
    let mut flags: Vec<String> = pool.apply(&grant, (["read"], ["execute", "read"])).unwrap();
    flags.sort();
    assert_eq!(flags, ["execute", "read"]);

    let first_char = task(RECORDS, "first-char");
    assert_eq!(
        pool.apply::<_, Option<char>>(&first_char, ("λx",)).unwrap(),
        Some('λ')
    );
    assert_eq!(
        pool.apply::<_, Option<char>>(&first_char, ("",)).unwrap(),
        None
    );

    let minmax = task(RECORDS, "minmax");
    assert_eq!(
        pool.apply::<_, Option<(f64, f64)>>(&minmax, (vec![3.0, -1.0, 2.5],))
            .unwrap(),
        Some((-1.0, 3.0))
    );
    assert_eq!(
        pool.apply::<_, Option<(f64, f64)>>(&minmax, (Vec::<f64>::new(),))
            .unwrap(),
        None
    );

    let err = pool
        .apply::<_, f64>(&area, (serde_json::json!({"triangle": 1.0}),))
        .unwrap_err();
    assert!(err.to_string().contains("unknown case `triangle`"), "{err}");
}

#[test]
fn strings_and_lists_of_records() {
    let pool = pool(1);
    let word_count = task(WORDS, "word-count");
    let freqs: Vec<WordFreq> = pool
        .apply(&word_count, ("The cat and the hat, the END.",))
        .unwrap();
    assert_eq!(
        freqs[0],
        WordFreq {
            word: "the".into(),
            count: 3
        }
    );
    assert_eq!(freqs.len(), 5);
    let count_words = task(WORDS, "count-words");
    assert_eq!(
        pool.apply::<_, u32>(&count_words, ("one two  three",))
            .unwrap(),
        3
    );
}

#[test]
fn guest_stdout_and_stderr_reach_the_caller() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let pool = wasmpool::Pool::builder()
        .workers(1)
        .on_output(move |out| {
            sink.lock()
                .unwrap()
                .push((out.task, out.stream, out.text.to_string()))
        })
        .build()
        .unwrap();
    let hello = task(HELLO, "hello");
    let greeting: String = pool.apply(&hello, ("world",)).unwrap();
    assert_eq!(greeting, "hello, world!");
    let seen = seen.lock().unwrap();
    assert!(
        seen.contains(&(
            0,
            wasmpool::GuestStream::Stdout,
            "hello, world!\n".to_string()
        )),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(
            0,
            wasmpool::GuestStream::Stderr,
            "greeting world\n".to_string()
        )),
        "{seen:?}"
    );
}
