//! The SpamAssassin mail corpus as `scripts/get-spam.sh` lays it out, turned into model
//! inputs: a reader, a word tokenizer with hashed ids, and each mail's sender domain.
//!
//! Shared by `examples/text_reproduction.rs` and `tests/unlearn_spam.rs` (included with
//! `#[path]`); it is example code, not part of the library: a tokenizer is the caller's
//! business, and gradtau only sees the ids.
//!
//! - **Tokens**: maximal runs of ASCII letters and digits, lower-cased, 2 to 24 characters,
//!   over the whole mail (headers included, as a filter sees them). Each word is hashed
//!   (64-bit FNV-1a) into ids `1..VOCAB`; id [`PAD`] = 0 is reserved for padding. Hashing
//!   needs no vocabulary built from the data, so nothing leaks from the test split into the
//!   features; collisions are rare at 2^14 buckets against a few thousand frequent words.
//! - **Length**: the first [`SEQ_LEN`] tokens; shorter mails are padded with [`PAD`] at the
//!   end. The model's `mean` over tokens averages the pads too (the op has no mask), so a
//!   mail of n real tokens is pooled as `(n/L)·mean(real) + (1 − n/L)·e_pad`: the pad row is
//!   a learned vector and the model also sees the length. That is a known property of
//!   unmasked mean pooling, kept here because it is what the spec format exports to ONNX.
//! - **Sender domain**: the domain of the last address in the `From:` header (continuation
//!   lines unfolded), lower-cased; mails without a `From:` header or without an address in
//!   it get [`UNKNOWN_DOMAIN`]. The mbox separator line `From addr date` is not a header.

use std::path::Path;

/// The corpus's folders, in the order the labels are listed; spam folders start with "spam".
pub const FOLDERS: [&str; 5] = ["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"];

/// Hash buckets of the word ids, pad included.
pub const VOCAB: usize = 1 << 14;
/// Tokens per mail after truncation and padding.
pub const SEQ_LEN: usize = 256;
/// The padding id (an embedding row of its own, trained like the others).
pub const PAD: u32 = 0;
/// The sender domain of a mail whose `From:` header holds no address.
pub const UNKNOWN_DOMAIN: &str = "(unknown)";

/// Class labels.
pub const HAM: u32 = 0;
pub const SPAM: u32 = 1;

/// One mail of the corpus.
pub struct Mail {
    /// The corpus folder ("category"), e.g. "hard-ham-1".
    pub folder: String,
    pub text: String,
}

impl Mail {
    pub fn label(&self) -> u32 {
        if self.folder.starts_with("spam") {
            SPAM
        } else {
            HAM
        }
    }
}

/// Reads every `<folder>/*.json` under `dir`, sorted by folder and file name (a stable order,
/// whatever the file system lists).
pub fn read_corpus(dir: &Path) -> Result<Vec<Mail>, String> {
    let mut mails = Vec::new();
    for folder in FOLDERS {
        let sub = dir.join(folder);
        let entries = std::fs::read_dir(&sub).map_err(|e| format!("{}: {e}", sub.display()))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        for n in names {
            let path = sub.join(&n);
            let raw =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let v: serde_json::Value =
                serde_json::from_str(&raw).map_err(|e| format!("{}: {e}", path.display()))?;
            let text = v["text"]
                .as_str()
                .ok_or_else(|| format!("{}: no `text` field", path.display()))?;
            mails.push(Mail {
                folder: folder.to_string(),
                text: text.to_string(),
            });
        }
    }
    Ok(mails)
}

/// 64-bit FNV-1a: a fixed, dependency-free hash, so ids are the same on every machine.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The lower-cased words of `text` (runs of ASCII letters and digits, 2 to 24 long).
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| (2..=24).contains(&w.len()))
        .map(|w| w.to_ascii_lowercase())
}

/// The hashed id of a word, in `1..VOCAB`.
pub fn word_id(word: &str) -> u32 {
    1 + (fnv1a(word.as_bytes()) % (VOCAB as u64 - 1)) as u32
}

/// The mail's first [`SEQ_LEN`] word ids, padded with [`PAD`].
pub fn token_ids(text: &str) -> Vec<u32> {
    let mut ids: Vec<u32> = words(text).take(SEQ_LEN).map(|w| word_id(&w)).collect();
    ids.resize(SEQ_LEN, PAD);
    ids
}

/// The header block: everything before the first empty line.
fn header_block(text: &str) -> &str {
    let end = [text.find("\n\n"), text.find("\r\n\r\n")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(text.len());
    &text[..end]
}

/// The value of the first `From:` header, continuation lines unfolded.
fn from_header(text: &str) -> Option<String> {
    let mut lines = header_block(text).lines().map(|l| l.trim_end_matches('\r'));
    while let Some(line) = lines.next() {
        let is_from = line.len() >= 5 && line[..5].eq_ignore_ascii_case("from:");
        if !is_from {
            continue;
        }
        let mut value = line[5..].to_string();
        let rest: Vec<&str> = lines
            .by_ref()
            .take_while(|l| l.starts_with([' ', '\t']))
            .collect();
        for l in rest {
            value.push(' ');
            value.push_str(l.trim());
        }
        return Some(value);
    }
    None
}

/// The domain of the last address in `value` (`name <user@host>` or a bare `user@host`).
fn address_domain(value: &str) -> Option<String> {
    let at = value.rfind('@')?;
    let domain: String = value[at + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    let domain = domain.trim_matches('.').to_ascii_lowercase();
    (domain.contains('.') && !domain.starts_with('-')).then_some(domain)
}

/// The sender's domain from the `From:` header, or [`UNKNOWN_DOMAIN`].
pub fn sender_domain(text: &str) -> String {
    from_header(text)
        .and_then(|v| address_domain(&v))
        .unwrap_or_else(|| UNKNOWN_DOMAIN.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_domains() {
        let m = "From someone@else.org  Thu Aug 22 2002\nReturn-Path: <a@b.c>\n\
                 From: \"Ann\" <Ann@Mail.Example.COM>\nSubject: x\n\nFrom: body@not.header\n";
        assert_eq!(sender_domain(m), "mail.example.com");
        assert_eq!(
            sender_domain("From: ann\n\tat <ann@folded.net>\n\nhi"),
            "folded.net"
        );
        assert_eq!(
            sender_domain("Subject: none\n\nFrom: x@y.z\n"),
            UNKNOWN_DOMAIN
        );
        assert_eq!(sender_domain("From: no address here\n\n"), UNKNOWN_DOMAIN);
        assert_eq!(sender_domain("FROM: bare@host.org.\r\n\r\n"), "host.org");
    }

    #[test]
    fn tokens_are_hashed_and_padded() {
        let ids = token_ids("Hello, HELLO world! a 42");
        assert_eq!(ids.len(), SEQ_LEN);
        assert_eq!(ids[0], ids[1], "case is folded");
        assert_ne!(ids[0], ids[2]);
        // "a" is too short; "42" counts.
        assert!(ids[3] != PAD && ids[4] == PAD);
        assert!(ids.iter().all(|&i| (i as usize) < VOCAB));
    }
}
