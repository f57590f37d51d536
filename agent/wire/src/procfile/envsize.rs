//! What an environment variable may hold so a dyno can be started with it: no NUL byte (execve
//! cannot pass one), each `KEY=value` under the kernel's per-string limit (`MAX_ARG_STRLEN`,
//! 128 KiB, else `Argument list too long`), and the whole set well under `ARG_MAX`. Config vars
//! are checked at the door and a slug's `.env` at deploy, so a bad value is a clear error there,
//! never a dyno that cannot start.

/// Longest `KEY=value`, bytes (the kernel's `MAX_ARG_STRLEN` is 128 KiB; keep room).
pub const MAX_VAR: usize = 64 * 1024;
/// Largest total of every `KEY=value` (the kernel allows a quarter of the stack limit, 2 MiB
/// with the default 8 MiB stack, for arguments and environment together).
pub const MAX_TOTAL: usize = 512 * 1024;

/// Checks one variable; the error names the key and the limit.
pub fn check_var(key: &str, value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err(format!(
            "{key}: the value contains a NUL byte, which no process environment can hold"
        ));
    }
    let len = key.len() + 1 + value.len();
    if len > MAX_VAR {
        return Err(format!(
            "{key}: {len} bytes as KEY=value, more than the {MAX_VAR} a variable may have (the kernel refuses to start a process with more than 128 KiB in one variable)"
        ));
    }
    Ok(())
}

/// Checks every variable and their total.
pub fn check_all<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), String> {
    let mut total = 0;
    for (k, v) in vars {
        check_var(k, v)?;
        total += k.len() + 1 + v.len();
    }
    if total > MAX_TOTAL {
        return Err(format!(
            "the variables total {total} bytes, more than the {MAX_TOTAL} allowed for a dyno's environment"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_long_and_too_many_are_refused_with_the_key_and_limit() {
        assert!(check_var("A", "fine").is_ok());
        let e = check_var("BAD", "a\0b").unwrap_err();
        assert!(e.starts_with("BAD:") && e.contains("NUL"), "{e}");
        let e = check_var("BIG", &"x".repeat(200 * 1024)).unwrap_err();
        assert!(e.starts_with("BIG:") && e.contains("65536"), "{e}");
        let v = "x".repeat(60 * 1024);
        let many: Vec<(String, String)> = (0..10).map(|i| (format!("K{i}"), v.clone())).collect();
        let e = check_all(many.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap_err();
        assert!(e.contains("524288"), "{e}");
    }
}
