//! The built-in embedder: feature hashing, offline, deterministic, fast.
//!
//! Each text becomes a bag of features — its lower-cased words, and the character trigrams
//! of each word (with boundary marks, `<re`, `rem`, … `er>`) at half weight — hashed with
//! xxh3 into `dimension` signed buckets and normalised to unit length.
//!
//! What it captures: shared words, and shared word parts (`remind` / `reminder` /
//! `reminders`, typos), so cosine similarity ranks texts by lexical overlap.
//! What it does not: meaning. Synonyms (`car` / `automobile`), paraphrases and other
//! languages look unrelated; word order is ignored. Use a real model (the `openai` provider
//! with OpenAI, Ollama, vLLM or TEI) wherever search quality matters.

use xxhash_rust::xxh3::xxh3_64;

/// Weight of a character trigram relative to a whole word.
const TRIGRAM_WEIGHT: f32 = 0.5;

#[derive(Clone, Debug)]
pub struct LocalEmbedder {
    dimension: usize,
}

impl LocalEmbedder {
    pub fn new(dimension: usize) -> LocalEmbedder {
        LocalEmbedder { dimension }
    }

    /// The unit vector of `text`, or `None` if it has no word.
    pub fn embed(&self, text: &str) -> Option<Vec<f32>> {
        let mut v = vec![0f32; self.dimension];
        let mut any = false;
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            any = true;
            let word = word.to_lowercase();
            self.add(&mut v, b'w', word.as_bytes(), 1.0);
            let marked: Vec<char> = std::iter::once('<')
                .chain(word.chars())
                .chain(std::iter::once('>'))
                .collect();
            for tri in marked.windows(3) {
                let tri: String = tri.iter().collect();
                self.add(&mut v, b't', tri.as_bytes(), TRIGRAM_WEIGHT);
            }
        }
        if !any {
            return None;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm == 0.0 {
            return None;
        }
        v.iter_mut().for_each(|x| *x /= norm);
        Some(v)
    }

    /// Adds one feature: its hash picks the bucket, its top bit the sign (so collisions
    /// cancel out on average instead of piling up).
    fn add(&self, v: &mut [f32], kind: u8, feature: &[u8], weight: f32) {
        let mut key = Vec::with_capacity(feature.len() + 1);
        key.push(kind);
        key.extend_from_slice(feature);
        let h = xxh3_64(&key);
        let bucket = (h % self.dimension as u64) as usize;
        let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
        v[bucket] += sign * weight;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn unit_length_deterministic_and_case_blind() {
        let e = LocalEmbedder::new(384);
        let a = e.embed("Remind me to call Mum").unwrap();
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(a, e.embed("remind ME to call mum!").unwrap());
        assert_eq!(e.embed("  ... !? "), None);
    }

    #[test]
    fn ranks_by_lexical_overlap() {
        let e = LocalEmbedder::new(384);
        let q = e.embed("reminder about the dentist").unwrap();
        let close = e
            .embed("set a reminder for the dentist appointment")
            .unwrap();
        let part = e.embed("dentist").unwrap();
        let far = e.embed("my favourite colour is blue").unwrap();
        let (c, p, f) = (cosine(&q, &close), cosine(&q, &part), cosine(&q, &far));
        assert!(c > p && p > f, "close {c}, part {p}, far {f}");
        // Word parts count: "reminders" is near "reminder", unlike an unrelated word.
        let plural = cosine(
            &e.embed("reminders").unwrap(),
            &e.embed("reminder").unwrap(),
        );
        let other = cosine(&e.embed("weather").unwrap(), &e.embed("reminder").unwrap());
        assert!(
            plural > 0.5 && other < 0.2,
            "plural {plural}, other {other}"
        );
    }
}
