//! CloudTrail's key layout, for listing only what a scan asks for:
//! `[prefix/]AWSLogs/[o-org/]<account>/CloudTrail/<region>/YYYY/MM/DD/<file>`.
//!
//! A listing of an S3 prefix is narrowed level by level: the organisation and account folders
//! (listed, or named with `--account`), `CloudTrail/`, the Region folders (listed, or named with
//! `--region`), and the day folders between `--since` and `--until` (named, never listed). The
//! parts of the prefix the user wrote fix their levels. This module only plans; the S3 client
//! lists (`crate::s3::list_logs`).

/// Where a listing stands in the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Under `AWSLogs/`: organisation ids (`o-…/`) and account ids.
    Top,
    /// Under `AWSLogs/o-…/`: account ids.
    OrgAccounts,
    /// Under `<account>/`: `CloudTrail/` is next.
    Account,
    /// Under `CloudTrail/`: Regions.
    Regions,
    /// Under `<region>/`: `YYYY/MM/DD/`.
    Days,
}

/// A user's `s3://bucket/prefix`, split at the layout: the `AWSLogs/` root, the whole folders
/// written after it, and a last partial name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub root: String,
    pub fixed: Vec<String>,
    pub partial: String,
}

impl Start {
    pub fn parse(prefix: &str) -> Start {
        let (root, tail) = match prefix.find("AWSLogs/") {
            Some(i) => (prefix[..i + 8].to_owned(), &prefix[i + 8..]),
            None if prefix.ends_with("AWSLogs") => (format!("{prefix}/"), ""),
            None if prefix.is_empty() || prefix.ends_with('/') => (format!("{prefix}AWSLogs/"), ""),
            None => (format!("{prefix}/AWSLogs/"), ""),
        };
        let mut fixed: Vec<String> = tail.split('/').map(str::to_owned).collect();
        let partial = fixed.pop().unwrap_or_default();
        Start {
            root,
            fixed,
            partial,
        }
    }
}

/// What narrows the listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowing {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    /// The first and last day folders (Unix days) to list.
    pub days: Option<(i64, i64)>,
}

/// The longest stretch of days listed one folder at a time (ten years).
pub const MAX_DAYS: i64 = 3660;

impl Narrowing {
    /// The day folders of `--since`/`--until` (Unix seconds): from the day of `since` to the
    /// day after `until` (or `now`) — CloudTrail delivers a log up to about fifteen minutes
    /// after its events, so a day's last events may sit in the next day's folder; an empty
    /// range when `until` is before `since`. `None` without `since`, or for more than
    /// [`MAX_DAYS`] days: then every day is listed.
    pub fn days_between(since: Option<i64>, until: Option<i64>, now: i64) -> Option<(i64, i64)> {
        let since = since?;
        let until = until.unwrap_or(now);
        let first = since.div_euclid(86_400);
        if until < since {
            // Nothing asked for: no day at all.
            return Some((first, first - 1));
        }
        let last = until.div_euclid(86_400) + 1;
        (last - first <= MAX_DAYS).then_some((first, last))
    }
}

/// `YYYY/MM/DD/` of a Unix day.
pub fn day_folder(day: i64) -> String {
    let date = crate::time::format_timestamp(day * 86_400);
    format!("{}/{}/{}/", &date[0..4], &date[5..7], &date[8..10])
}

/// Whether a folder name is an account id.
pub fn is_account(name: &str) -> bool {
    name.len() == 12 && name.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a folder name is an organisation id (`o-` and 10 to 32 lowercase letters or
/// digits).
pub fn is_org(name: &str) -> bool {
    name.strip_prefix("o-").is_some_and(|id| {
        (10..=32).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// The next step from `prefix` at `level`, given the folder names the user's prefix fixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// List this prefix's folders (delimiter `/`) and go on from each at the level.
    Folders(String, Level),
    /// Go on from these prefixes at the level, without listing.
    Named(Vec<String>, Level),
    /// List everything under these prefixes.
    Objects(Vec<String>),
    /// Nothing here can hold what was asked for.
    Nothing,
}

/// Plans the step at `level` from `prefix`; `fixed` are the folder names still to consume
/// from the user's prefix, `partial` its last partial name.
pub fn step(prefix: &str, level: Level, fixed: &[String], partial: &str, n: &Narrowing) -> Next {
    let account_ok = |a: &str| n.accounts.is_empty() || n.accounts.iter().any(|x| x == a);
    let region_ok = |r: &str| n.regions.is_empty() || n.regions.iter().any(|x| x == r);
    if let Some((name, rest)) = fixed.split_first() {
        // A folder the user wrote: follow it if it fits the layout and the filters.
        let here = format!("{prefix}{name}/");
        return match level {
            Level::Top if is_org(name) => step(&here, Level::OrgAccounts, rest, partial, n),
            Level::Top | Level::OrgAccounts if is_account(name) && account_ok(name) => {
                step(&here, Level::Account, rest, partial, n)
            }
            Level::Account if name == "CloudTrail" => step(&here, Level::Regions, rest, partial, n),
            Level::Regions if region_ok(name) => step(&here, Level::Days, rest, partial, n),
            Level::Days => {
                // The user named a year, a month or a day (or more): the days asked for
                // within what was written.
                let wanted = format!("{}/{partial}", fixed.join("/"));
                match n.days {
                    Some((first, last)) => {
                        let mut found: Vec<String> = (first..=last)
                            .map(day_folder)
                            .filter(|d| d.starts_with(&wanted) || wanted.starts_with(d.as_str()))
                            .map(|d| {
                                if wanted.len() > d.len() {
                                    format!("{prefix}{wanted}")
                                } else {
                                    format!("{prefix}{d}")
                                }
                            })
                            .collect();
                        found.dedup();
                        if found.is_empty() {
                            Next::Nothing
                        } else {
                            Next::Objects(found)
                        }
                    }
                    None => Next::Objects(vec![format!("{prefix}{wanted}")]),
                }
            }
            _ => Next::Nothing,
        };
    }
    if !partial.is_empty() {
        // A partial name: list what starts with it, unnarrowed below.
        return Next::Objects(vec![format!("{prefix}{partial}")]);
    }
    match level {
        Level::Top => Next::Folders(prefix.to_owned(), Level::Top),
        Level::OrgAccounts if !n.accounts.is_empty() => Next::Named(
            n.accounts.iter().map(|a| format!("{prefix}{a}/")).collect(),
            Level::Account,
        ),
        Level::OrgAccounts => Next::Folders(prefix.to_owned(), Level::OrgAccounts),
        Level::Account => Next::Named(vec![format!("{prefix}CloudTrail/")], Level::Regions),
        Level::Regions if !n.regions.is_empty() => Next::Named(
            n.regions.iter().map(|r| format!("{prefix}{r}/")).collect(),
            Level::Days,
        ),
        Level::Regions => Next::Folders(prefix.to_owned(), Level::Regions),
        Level::Days => match n.days {
            Some((first, last)) => Next::Objects(
                (first..=last)
                    .map(|d| format!("{prefix}{}", day_folder(d)))
                    .collect(),
            ),
            None => Next::Objects(vec![prefix.to_owned()]),
        },
    }
}

/// Where a listed folder leads, at the level it was listed at: `None` when it is no part of
/// the layout or the filters leave it out.
pub fn follow(folder: &str, listed_at: Level, n: &Narrowing) -> Option<(String, Level)> {
    let name = folder
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    let account_ok = n.accounts.is_empty() || n.accounts.iter().any(|x| x == name);
    match listed_at {
        Level::Top if is_org(name) => Some((folder.to_owned(), Level::OrgAccounts)),
        Level::Top | Level::OrgAccounts if is_account(name) && account_ok => {
            Some((folder.to_owned(), Level::Account))
        }
        Level::Regions if n.regions.is_empty() || n.regions.iter().any(|r| r == name) => {
            Some((folder.to_owned(), Level::Days))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(since: &str, until: &str) -> Option<(i64, i64)> {
        Narrowing::days_between(
            crate::time::parse_timestamp(since),
            crate::time::parse_timestamp(until),
            0,
        )
    }

    #[test]
    fn the_start_splits_at_awslogs() {
        assert_eq!(
            Start::parse(""),
            Start {
                root: "AWSLogs/".into(),
                fixed: vec![],
                partial: "".into()
            }
        );
        assert_eq!(Start::parse("trails").root, "trails/AWSLogs/");
        assert_eq!(Start::parse("trails/").root, "trails/AWSLogs/");
        let s = Start::parse("t/AWSLogs/o-abcdefghij/111122223333/CloudTrail/us-east-1/2024/01/1");
        assert_eq!(s.root, "t/AWSLogs/");
        assert_eq!(
            s.fixed,
            [
                "o-abcdefghij",
                "111122223333",
                "CloudTrail",
                "us-east-1",
                "2024",
                "01"
            ]
        );
        assert_eq!(s.partial, "1");
    }

    #[test]
    fn day_folders_run_to_the_day_after_until() {
        let (first, last) = days("2024-02-28T10:00:00Z", "2024-03-01T23:00:00Z").unwrap();
        let folders: Vec<String> = (first..=last).map(day_folder).collect();
        assert_eq!(
            folders,
            ["2024/02/28/", "2024/02/29/", "2024/03/01/", "2024/03/02/"]
        );
        let (first, last) = days("2024-03-02", "2024-03-01").unwrap();
        assert!(first > last, "until before since: no day");
        assert_eq!(
            Narrowing::days_between(None, Some(5), 0),
            None,
            "no since: every day"
        );
    }

    #[test]
    fn the_levels_are_listed_or_named() {
        let n = Narrowing {
            accounts: vec!["111122223333".into()],
            regions: vec!["eu-west-1".into(), "us-east-1".into()],
            days: days("2024-01-10", "2024-01-10T12:00:00Z"),
        };
        assert_eq!(
            step("AWSLogs/", Level::Top, &[], "", &n),
            Next::Folders("AWSLogs/".into(), Level::Top)
        );
        assert_eq!(
            follow("AWSLogs/o-abcdefghij/", Level::Top, &n),
            Some(("AWSLogs/o-abcdefghij/".into(), Level::OrgAccounts))
        );
        assert_eq!(follow("AWSLogs/999999999999/", Level::Top, &n), None);
        assert_eq!(follow("AWSLogs/not-an-account/", Level::Top, &n), None);
        assert_eq!(
            step("AWSLogs/o-abcdefghij/", Level::OrgAccounts, &[], "", &n),
            Next::Named(
                vec!["AWSLogs/o-abcdefghij/111122223333/".into()],
                Level::Account
            )
        );
        assert_eq!(
            step("A/1/", Level::Account, &[], "", &n),
            Next::Named(vec!["A/1/CloudTrail/".into()], Level::Regions)
        );
        assert_eq!(
            step("A/1/CloudTrail/", Level::Regions, &[], "", &n),
            Next::Named(
                vec![
                    "A/1/CloudTrail/eu-west-1/".into(),
                    "A/1/CloudTrail/us-east-1/".into()
                ],
                Level::Days
            )
        );
        assert_eq!(
            step("R/", Level::Days, &[], "", &n),
            Next::Objects(vec!["R/2024/01/10/".into(), "R/2024/01/11/".into()])
        );
        // Without narrowing: list the accounts, the Regions, and everything below a Region.
        let none = Narrowing::default();
        assert_eq!(
            step("R/", Level::Days, &[], "", &none),
            Next::Objects(vec!["R/".into()])
        );
        assert_eq!(
            step("A/o-abcdefghij/", Level::OrgAccounts, &[], "", &none),
            Next::Folders("A/o-abcdefghij/".into(), Level::OrgAccounts)
        );
    }

    #[test]
    fn the_users_folders_fix_their_levels() {
        let n = Narrowing {
            days: days("2024-01-30", "2024-02-02"),
            ..Narrowing::default()
        };
        let start = Start::parse("AWSLogs/111122223333/CloudTrail/us-east-1/2024/02/");
        assert_eq!(
            step(&start.root, Level::Top, &start.fixed, &start.partial, &n),
            Next::Objects(vec![
                "AWSLogs/111122223333/CloudTrail/us-east-1/2024/02/01/".into(),
                "AWSLogs/111122223333/CloudTrail/us-east-1/2024/02/02/".into(),
                "AWSLogs/111122223333/CloudTrail/us-east-1/2024/02/03/".into(),
            ])
        );
        // A month outside the days asked for: nothing to list.
        let start = Start::parse("AWSLogs/111122223333/CloudTrail/us-east-1/2023/12/");
        assert_eq!(
            step(&start.root, Level::Top, &start.fixed, &start.partial, &n),
            Next::Nothing
        );
        // An account the filter leaves out, or a folder outside the layout: nothing.
        let only = Narrowing {
            accounts: vec!["999999999999".into()],
            ..Narrowing::default()
        };
        let start = Start::parse("AWSLogs/111122223333/");
        assert_eq!(
            step(&start.root, Level::Top, &start.fixed, &start.partial, &only),
            Next::Nothing
        );
        let start = Start::parse("AWSLogs/111122223333/CloudTrail-Digest/");
        assert_eq!(
            step(&start.root, Level::Top, &start.fixed, &start.partial, &n),
            Next::Nothing
        );
        // A partial day: the days asked for that start with it.
        let start = Start::parse("AWSLogs/111122223333/CloudTrail/us-east-1/2024/02/0");
        assert_eq!(
            step(&start.root, Level::Top, &start.fixed, &start.partial, &n),
            Next::Objects(vec![
                "AWSLogs/111122223333/CloudTrail/us-east-1/2024/02/01/".into(),
                "AWSLogs/111122223333/CloudTrail/us-east-1/2024/02/02/".into(),
                "AWSLogs/111122223333/CloudTrail/us-east-1/2024/02/03/".into(),
            ])
        );
        // A partial name: everything that starts with it.
        let start = Start::parse("AWSLogs/1111");
        assert_eq!(
            step(&start.root, Level::Top, &start.fixed, &start.partial, &n),
            Next::Objects(vec!["AWSLogs/1111".into()])
        );
    }
}
