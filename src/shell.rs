//! Text for the user's shell: paths and keys in the commands bucketfs
//! suggests, so that they can be pasted as they are.

/// `text` as one shell word: as it is when no shell treats any of its
/// characters specially, else single-quoted.
pub fn quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&byte));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn words_are_quoted_only_when_a_shell_would_split_or_expand_them() {
        assert_eq!(quote("/mnt/s3"), "/mnt/s3");
        assert_eq!(quote("logs/2024-01-01.gz"), "logs/2024-01-01.gz");
        assert_eq!(quote("/mnt/my s3"), "'/mnt/my s3'");
        assert_eq!(quote("/mnt/it's"), r"'/mnt/it'\''s'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote(""), "''");
    }
}
