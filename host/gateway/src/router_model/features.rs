//! Cheap text features for the learned router: hashed word unigrams and bigrams of the
//! final question plus a few dense shape features (length, digits, symbols, options).

/// Number of dense features appended after the hashed buckets.
pub const DENSE_FEATURES: usize = 6;

/// One prompt's features: sparse hashed buckets (L2-normalised presence) and dense values.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseFeatures {
    pub hashed: Vec<(u32, f32)>,
    pub dense: [f32; DENSE_FEATURES],
}

/// The question that matters: a few-shot preamble (blocks that end in a worked
/// `Answer: X`) is dropped, and what follows the last such block is kept.
pub fn final_question(prompt: &str) -> &str {
    let mut start = 0;
    let mut offset = 0;
    for block in prompt.split("\n\n") {
        offset += block.len() + 2;
        if is_worked_example(block) && offset <= prompt.len() {
            start = offset;
        }
    }
    prompt.get(start..).unwrap_or(prompt)
}

fn is_worked_example(block: &str) -> bool {
    let last_line = block.trim_end().rsplit('\n').next().unwrap_or("");
    match last_line.trim().strip_prefix("Answer:") {
        Some(rest) => !rest.trim().is_empty(),
        None => false,
    }
}

/// Features of `prompt`'s final question, words hashed into `buckets` buckets.
pub fn extract(prompt: &str, buckets: u32) -> SparseFeatures {
    let question = final_question(prompt);
    let words: Vec<String> = question
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let mut hashed: Vec<u32> = Vec::with_capacity(words.len() * 2);
    if buckets > 0 {
        for (i, word) in words.iter().enumerate() {
            hashed.push(bucket_of(&[word], buckets));
            if let Some(next) = words.get(i + 1) {
                hashed.push(bucket_of(&[word, next], buckets));
            }
        }
    }
    hashed.sort_unstable();
    hashed.dedup();
    let norm = if hashed.is_empty() {
        0.0
    } else {
        1.0 / (hashed.len() as f32).sqrt()
    };
    SparseFeatures {
        hashed: hashed.into_iter().map(|b| (b, norm)).collect(),
        dense: dense_features(question, words.len()),
    }
}

fn dense_features(question: &str, word_count: usize) -> [f32; DENSE_FEATURES] {
    let chars = question.chars().count().max(1) as f32;
    let share =
        |pred: fn(char) -> bool| question.chars().filter(|&c| pred(c)).count() as f32 / chars;
    let options: Vec<usize> = question
        .lines()
        .filter_map(|line| {
            let mut it = line.chars();
            let letter = it.next()?;
            (letter.is_ascii_uppercase() && it.next() == Some('.')).then_some(line.len())
        })
        .collect();
    let mean_option_len = if options.is_empty() {
        0.0
    } else {
        options.iter().sum::<usize>() as f32 / options.len() as f32
    };
    [
        (1.0 + word_count as f32).ln(),
        (1.0 + chars).ln(),
        share(|c| c.is_ascii_digit()),
        share(|c| "=+-*/^()<>|_{}[]√∑∫".contains(c)),
        share(char::is_uppercase),
        (1.0 + mean_option_len).ln(),
    ]
}

/// FNV-1a over the words (with a separator) reduced to a bucket.
fn bucket_of(words: &[&String], buckets: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for word in words {
        for byte in word.bytes().chain(std::iter::once(0x1f)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    (hash % u64::from(buckets)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_shot_preamble_is_dropped() {
        let prompt = "Q1?\nA. x\nB. y\nAnswer: A\n\nQ2?\nA. x\nB. y\nAnswer: B\n\nReal question?\nA. p\nAnswer:";
        assert_eq!(final_question(prompt), "Real question?\nA. p\nAnswer:");
        let plain = "Para one.\n\nPara two?\nA. x\nAnswer:";
        assert_eq!(final_question(plain), plain);
    }

    #[test]
    fn features_are_deterministic_and_normalised() {
        let a = extract(
            "Find the degree of Q(sqrt(2)) over Q.\nA. 0\nB. 4\nAnswer:",
            4096,
        );
        let b = extract(
            "Find the degree of Q(sqrt(2)) over Q.\nA. 0\nB. 4\nAnswer:",
            4096,
        );
        assert_eq!(a, b);
        let norm: f32 = a.hashed.iter().map(|(_, v)| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        assert!(a.hashed.iter().all(|(bucket, _)| *bucket < 4096));
        assert!(a.dense[2] > 0.0, "digits counted");
        assert!(extract("", 4096).hashed.is_empty());
    }
}
