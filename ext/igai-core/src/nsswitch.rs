//! Reads nsswitch.conf far enough to prove that glibc asks `/etc/hosts` first.
//!
//! glibc consults the sources of the `hosts` line in order; `files` with its default actions
//! (`SUCCESS=return`) stops at the first source that knows the name. So when the line is
//! `files` (or `files dns`) and `/etc/hosts` lists a name, getaddrinfo(3) answers that name
//! from the file without any network. Anything this module does not understand exactly
//! counts as unproven, and the caller then treats the lookup as one that may stall:
//!
//! * a missing file, or one without a `hosts` line: glibc's default is
//!   `dns [!UNAVAIL=return] files`, DNS first;
//! * more than one `hosts` line (glibc versions disagree on which one wins), or one spelled
//!   in another case;
//! * any source other than `files` and `dns` (`myhostname`, `resolve`, `mdns4_minimal`, ...),
//!   any action (`[NOTFOUND=return]`, `[SUCCESS=continue]`, even a default one), `dns`
//!   before `files`;
//! * a line that starts with white space (a continuation in some parsers).

/// True when the `hosts` line of nsswitch.conf text `conf` is exactly `files` or `files
/// dns`, with nothing that could make glibc consult another source before `/etc/hosts`.
pub fn hosts_files_first(conf: &str) -> bool {
    let mut hosts_lines = conf.lines().filter_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        if line.trim().is_empty() {
            return None;
        }
        if line.starts_with(char::is_whitespace) {
            // Unproven, whatever it says: make the whole file fail below.
            return Some(None);
        }
        let (database, sources) = line.split_once(':')?;
        let database = database.trim_end();
        if !database.eq_ignore_ascii_case("hosts") {
            return None;
        }
        Some((database == "hosts").then_some(sources))
    });
    let (Some(Some(sources)), None) = (hosts_lines.next(), hosts_lines.next()) else {
        return false;
    };
    let sources: Vec<&str> = sources.split_whitespace().collect();
    matches!(sources.as_slice(), ["files"] | ["files", "dns"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_first_with_default_actions_is_proven() {
        assert!(hosts_files_first("hosts: files dns\n"));
        assert!(hosts_files_first("hosts:files\n"));
        assert!(hosts_files_first(
            "# comment\npasswd: files\nhosts:\tfiles   dns # the usual\nnetworks: files\n"
        ));
    }

    #[test]
    fn a_missing_hosts_line_means_glibcs_default_which_asks_dns_first() {
        assert!(!hosts_files_first(""));
        assert!(!hosts_files_first("passwd: files\nnetworks: files\n"));
        assert!(!hosts_files_first("# hosts: files dns\n"));
    }

    #[test]
    fn other_orders_sources_and_actions_are_unproven() {
        for line in [
            "hosts: dns files",
            "hosts: dns",
            "hosts: files myhostname dns",
            "hosts: files mdns4_minimal [NOTFOUND=return] dns",
            "hosts: files [NOTFOUND=return] dns",
            "hosts: files [SUCCESS=return] dns",
            "hosts: files [SUCCESS=continue] dns",
            "hosts: files dns [!UNAVAIL=return]",
            "hosts: resolve [!UNAVAIL=return] files dns",
            "hosts: files files",
            "hosts: FILES dns",
            "hosts:",
            "hosts: files[NOTFOUND=return]",
        ] {
            assert!(!hosts_files_first(line), "{line}");
        }
    }

    #[test]
    fn two_hosts_lines_a_differently_spelled_one_or_a_continuation_are_unproven() {
        assert!(!hosts_files_first("hosts: files dns\nhosts: files dns\n"));
        assert!(!hosts_files_first("hosts: files dns\nHosts: dns\n"));
        assert!(!hosts_files_first("HOSTS: files dns\n"));
        assert!(!hosts_files_first("hosts: files dns\n  myhostname\n"));
        assert!(!hosts_files_first("hosts files dns\n"));
    }
}
