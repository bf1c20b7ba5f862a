use super::*;
use std::net::Ipv4Addr;

fn parse(text: &str) -> Result<Rules, RuleError> {
    Rules::parse(
        Path::new("/etc/modsec2sguil/thresholds.conf"),
        text.as_bytes(),
    )
}

#[test]
fn good_rules_are_read_with_comments_and_blank_lines() {
    let r = parse(
        "# CRS site\n\
         \n\
         threshold gen_id 10001, sig_id 942100, type limit, track by_src, count 10, seconds 60 # sqli\n\
         event_filter gen_id 10001, sig_id *, type both, track by_rule, count 5, seconds 360\r\n\
         suppress gen_id 10001, sig_id 913100\n\
         suppress gen_id 10001, sig_id 0, track by_src, ip 203.0.113.0/24\n\
         suppress gen_id 10001, sig_id 920350, track by_dst, ip 2001:db8::1\n",
    )
    .unwrap();
    assert_eq!(
        r.thresholds,
        vec![
            ThresholdRule {
                sig: SigSel::Id(942100),
                kind: Kind::Limit,
                track: Track::BySrc,
                count: 10,
                seconds: 60,
                line: 3
            },
            ThresholdRule {
                sig: SigSel::Any,
                kind: Kind::Both,
                track: Track::ByRule,
                count: 5,
                seconds: 360,
                line: 4
            }
        ]
    );
    assert_eq!(r.suppressions.len(), 3);
    assert_eq!(r.suppressions[0].only, None);
    assert_eq!(r.suppressions[1].sig, SigSel::Any);
    assert_eq!(
        r.suppressions[1].only,
        Some((Track::BySrc, Net::parse("203.0.113.0/24").unwrap()))
    );
}

/// Every way a line can be wrong: refused, naming the file, the line and what is wrong.
#[test]
fn every_bad_line_is_refused_naming_file_line_and_fault() {
    let cases: &[(&str, &str)] = &[
        ("threshold", "not a rule"),
        ("threshold gen_id", "not a rule"),
        ("threshold gen_id 10001 sig_id 1", "not a rule"),
        ("threshold gen_id 10001,, sig_id 1", "not a rule"),
        ("threshold gen_id 10001, sig_id 1,", "not a rule"),
        ("rate_filter gen_id 10001, sig_id 1", "unknown rule `rate_filter`"),
        ("threshold gen_id 10001, sig_id 1, type limit, track by_src, count 1, seconds 1, new_action drop", "`new_action` is not an option of threshold"),
        ("suppress gen_id 10001, sig_id 1, count 3", "`count` is not an option of suppress"),
        ("threshold gen_id 10001, gen_id 10001, sig_id 1, type limit, track by_src, count 1, seconds 1", "`gen_id` is given twice"),
        ("threshold sig_id 1, type limit, track by_src, count 1, seconds 1", "threshold needs `gen_id`"),
        ("threshold gen_id 1, sig_id 1, type limit, track by_src, count 1, seconds 1", "gen_id must be 10001"),
        ("threshold gen_id 10001, type limit, track by_src, count 1, seconds 1", "threshold needs `sig_id`"),
        ("threshold gen_id 10001, sig_id x1, type limit, track by_src, count 1, seconds 1", "sig_id must be a rule id or `*`, not `x1`"),
        ("threshold gen_id 10001, sig_id 99999999999, type limit, track by_src, count 1, seconds 1", "sig_id must be"),
        ("threshold gen_id 10001, sig_id 1, track by_src, count 1, seconds 1", "threshold needs `type`"),
        ("threshold gen_id 10001, sig_id 1, type backoff, track by_src, count 1, seconds 1", "type must be limit, threshold or both, not `backoff`"),
        ("threshold gen_id 10001, sig_id 1, type limit, count 1, seconds 1", "threshold needs `track`"),
        ("threshold gen_id 10001, sig_id 1, type limit, track by_flow, count 1, seconds 1", "track must be by_src, by_dst or by_rule, not `by_flow`"),
        ("threshold gen_id 10001, sig_id 1, type limit, track by_src, seconds 1", "threshold needs `count`"),
        ("threshold gen_id 10001, sig_id 1, type limit, track by_src, count 0, seconds 1", "count must be a whole number from 1 to 1000000, not `0`"),
        ("threshold gen_id 10001, sig_id 1, type limit, track by_src, count -3, seconds 1", "count must be a whole number"),
        ("threshold gen_id 10001, sig_id 1, type limit, track by_src, count 1000001, seconds 1", "count must be a whole number"),
        ("threshold gen_id 10001, sig_id 1, type limit, track by_src, count 1", "threshold needs `seconds`"),
        ("threshold gen_id 10001, sig_id 1, type limit, track by_src, count 1, seconds 1s", "seconds must be a whole number"),
        ("threshold gen_id 10001, sig_id 1, type limit, track by_src, count 1, seconds 604801", "seconds must be a whole number"),
        ("suppress gen_id 10001, sig_id 1, track by_src", "suppress with `track` needs `ip`"),
        ("suppress gen_id 10001, sig_id 1, ip 10.0.0.1", "suppress with `ip` needs `track`"),
        ("suppress gen_id 10001, sig_id 1, track by_rule, ip 10.0.0.1", "suppress tracks by_src or by_dst"),
        ("suppress gen_id 10001, sig_id 1, track by_src, ip 10.0.0.300", "ip: `10.0.0.300` is not an IP address"),
        ("suppress gen_id 10001, sig_id 1, track by_src, ip 10.0.0.0/33", "ip: `/33` is not a prefix length from 0 to 32"),
        ("suppress gen_id 10001, sig_id 1, track by_src, ip 2001:db8::/129", "from 0 to 128"),
        ("suppress gen_id 10001, sig_id 1, track by_src, ip \x1b[31mx", "not an IP address"),
    ];
    for (line, want) in cases {
        let text = format!("# header\nthreshold gen_id 10001, sig_id 5, type limit, track by_src, count 1, seconds 1\n{line}\n");
        let e = parse(&text).expect_err(line);
        assert_eq!(e.line, 3, "{line}: {e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with("/etc/modsec2sguil/thresholds.conf:3: "),
            "{line}: {shown}"
        );
        assert!(shown.contains(want), "{line}: `{shown}` lacks `{want}`");
        assert!(!shown.contains('\x1b'), "{line}: unescaped: {shown}");
    }
    // A second threshold for one signature, which Snort would silently replace.
    let e = parse(
        "threshold gen_id 10001, sig_id 7, type limit, track by_src, count 1, seconds 1\n\
         threshold gen_id 10001, sig_id 7, type both, track by_dst, count 2, seconds 9\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.why.contains("first is on line 1"), "{e}");
    // Not text, an over-long line, an over-large file.
    let e = Rules::parse(Path::new("/t"), b"\n\xff\xfe\n").unwrap_err();
    assert_eq!((e.line, e.why.as_str()), (2, "not UTF-8 text"));
    let long = format!("# {}\n", "x".repeat(MAX_THRESHOLD_LINE_BYTES));
    assert_eq!(parse(&long).unwrap_err().line, 1);
    let big = "#\n".repeat(MAX_THRESHOLD_FILE_BYTES / 2 + 1);
    let e = parse(&big).unwrap_err();
    assert!(e.why.contains("MAX_THRESHOLD_FILE_BYTES"), "{e}");
}

fn facts(src: [u8; 4], time: i64, id: &str) -> Facts<'_> {
    Facts {
        sig: 2002087,
        src: Some(IpAddr::V4(Ipv4Addr::from(src))),
        dst: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80))),
        time,
        unique_id: id,
    }
}

/// Runs events at `times` (seconds) from one source through `rule`: which passed.
fn passes(rule: &str, times: &[i64]) -> Vec<bool> {
    let rules = parse(rule).unwrap();
    let mut t = Tracker::default();
    times
        .iter()
        .map(|&s| t.decide(&rules, &facts([198, 51, 100, 7], 1_000_000 + s, "u")) == Verdict::Pass)
        .collect()
}

/// The examples of Suricata's documentation (rules/thresholding, global-thresholds) and
/// Snort's (event_filter), with the sig id rewritten for our generator.
#[test]
fn semantics_follow_suricatas_documented_examples() {
    // "type limit, track by_src, seconds 180, count 1: at most 1 notification is
    // generated every 3 minutes per host".
    let limit =
        "threshold gen_id 10001, sig_id 2002087, type limit, track by_src, count 1, seconds 180";
    assert_eq!(
        passes(limit, &[0, 10, 179, 180, 200, 359, 360]),
        [true, false, false, true, false, false, true]
    );
    // "type threshold, track by_src, count 10, seconds 60: alert if 10 or more times
    // in 60 s": the 10th, 20th … of a window; a new window starts the count anew.
    let every = "threshold gen_id 10001, sig_id 2002087, type threshold, track by_src, count 10, seconds 60";
    let mut times: Vec<i64> = (0..25).collect();
    times.extend([70, 71]);
    let got = passes(every, &times);
    let want: Vec<bool> = (1..=25)
        .map(|n| n % 10 == 0)
        .chain([false, false])
        .collect();
    assert_eq!(got, want);
    // "type both, track by_src, count 5, seconds 360: an alert if within 6 minutes
    // there have been 5 or more …, and only once in that 6 minutes".
    let both =
        "threshold gen_id 10001, sig_id 2002087, type both, track by_src, count 5, seconds 360";
    let got = passes(both, &[0, 1, 2, 3, 4, 5, 6, 359, 360, 361, 362, 363, 364]);
    assert_eq!(
        got,
        [false, false, false, false, true, false, false, false, false, false, false, false, true]
    );
    // "suppress gen_id 1, sig_id 2002087, track by_src, ip 209.132.180.67: the
    // signature will never match for src host 209.132.180.67".
    let rules =
        parse("suppress gen_id 10001, sig_id 2002087, track by_src, ip 209.132.180.67").unwrap();
    let mut t = Tracker::default();
    assert!(
        matches!(t.decide(&rules, &facts([209, 132, 180, 67], 1, "a")), Verdict::Hold(w) if w.contains("line 1"))
    );
    assert_eq!(
        t.decide(&rules, &facts([209, 132, 180, 68], 1, "b")),
        Verdict::Pass
    );
    // Another signature is not touched; by_dst and a network.
    let rules = parse("suppress gen_id 10001, sig_id *, track by_dst, ip 192.0.2.0/24").unwrap();
    let mut other = facts([1, 2, 3, 4], 1, "c");
    other.sig = 1;
    assert!(matches!(t.decide(&rules, &other), Verdict::Hold(_)));
    let rules = parse("suppress gen_id 10001, sig_id 5").unwrap();
    assert_eq!(t.decide(&rules, &other), Verdict::Pass);
    assert!(t.summaries.is_empty(), "suppress makes no summary");
}

#[test]
fn keys_are_per_signature_and_address_and_ipv6_is_tracked_by_its_real_address() {
    let rules =
        parse("threshold gen_id 10001, sig_id *, type limit, track by_src, count 1, seconds 60")
            .unwrap();
    let mut t = Tracker::default();
    let v6 = |last: u16, id| Facts {
        sig: 1,
        src: Some(IpAddr::V6(std::net::Ipv6Addr::new(
            0x2001, 0xdb8, 0, 0, 0, 0, 0, last,
        ))),
        dst: None,
        time: 5,
        unique_id: id,
    };
    assert_eq!(t.decide(&rules, &v6(1, "a")), Verdict::Pass);
    assert_eq!(
        t.decide(&rules, &v6(2, "b")),
        Verdict::Pass,
        "another IPv6 client"
    );
    assert!(matches!(t.decide(&rules, &v6(1, "c")), Verdict::Hold(_)));
    let mut s2 = v6(1, "d");
    s2.sig = 2;
    assert_eq!(t.decide(&rules, &s2), Verdict::Pass, "another signature");
    assert_eq!(t.windows.len(), 3);
}

#[test]
fn a_closed_window_that_held_events_back_is_one_summary() {
    let rules = parse(
        "threshold gen_id 10001, sig_id 942100, type limit, track by_src, count 2, seconds 60",
    )
    .unwrap();
    let mut t = Tracker::default();
    let ev = |time, id| Facts {
        sig: 942100,
        src: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))),
        dst: None,
        time,
        unique_id: id,
    };
    let ids: Vec<String> = (0..4812 + 2).map(|i| format!("id{i}")).collect();
    for id in &ids {
        t.decide(&rules, &ev(100, id));
    }
    assert!(t.summaries.is_empty(), "still open");
    t.close_expired(159);
    assert!(t.summaries.is_empty(), "still open at 159");
    // An event after the window closes it (and opens the next).
    assert_eq!(t.decide(&rules, &ev(160, "next")), Verdict::Pass);
    assert_eq!(t.summaries.len(), 1);
    let s = &t.summaries[0];
    assert_eq!(
        s.message(),
        "MSc threshold: 4,812 more of 942100 from 203.0.113.9 in 60 s held back"
    );
    assert_eq!(
        (s.window.first_held.as_str(), s.window.last_held.as_str()),
        ("id2", "id4813")
    );
    assert_eq!(s.time(), 160);
    let detail = s.detail_lines().join("\n");
    assert!(
        detail.contains("requeue --suppressed --since 1970-01-01T00:01:40Z"),
        "{detail}"
    );
    // A window that held nothing back makes no summary; the clock closes windows.
    t.close_expired(1000);
    assert_eq!(t.summaries.len(), 1);
    assert!(t.windows.is_empty());
    assert_eq!(thousands(1_234_567), "1,234,567");
    assert_eq!(thousands(999), "999");
}

#[test]
fn the_example_thresholds_file_is_valid() {
    let text = include_bytes!("../../../examples/thresholds.conf");
    let r = Rules::parse(Path::new("examples/thresholds.conf"), text).unwrap();
    assert!(r.thresholds.iter().any(|t| t.sig == SigSel::Id(913100)));
    assert!(r.thresholds.iter().any(|t| t.sig == SigSel::Any));
    assert!(
        r.suppressions.is_empty(),
        "the suppressions are examples, commented"
    );
}
