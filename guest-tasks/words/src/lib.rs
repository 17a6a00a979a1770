//! The `words` task: word frequencies of a text (words are maximal runs of alphanumeric
//! characters, lowercased), sorted by count descending then word ascending, and a word count.

wit_bindgen::generate!({ path: "../../wit", world: "words" });

// A BTreeMap, not a HashMap: no random hasher seed, so no `wasi:random` import.
use std::collections::BTreeMap;

struct Words;

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

impl Guest for Words {
    fn word_count(text: String) -> Vec<WordFreq> {
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for word in words(&text) {
            *counts.entry(word.to_lowercase()).or_insert(0) += 1;
        }
        let mut freqs: Vec<WordFreq> = counts
            .into_iter()
            .map(|(word, count)| WordFreq { word, count })
            .collect();
        freqs.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.word.cmp(&b.word)));
        freqs
    }

    fn count_words(text: String) -> u32 {
        u32::try_from(words(&text).count()).unwrap_or(u32::MAX)
    }

    fn count_words_many(texts: Vec<String>) -> Vec<u32> {
        texts.into_iter().map(Self::count_words).collect()
    }
}

export!(Words);
