//! Every form an alert is shown in, in one place: the JSON alert document (cut to a size when
//! asked), the flat JSON line of `scan --format jsonl`, readable text lines, and the aligned row
//! of `scan`'s text output.

use serde_json::{json, Map, Value};

use super::{printable, Alert, AlertSource, EventInfo};
use crate::json;
use crate::model::describe_fields;

impl AlertSource {
    /// `{"file": …}`, `{"bucket": …, "key": …}` or `{"eventbridge": {…}}`: the alert document's
    /// `source`.
    pub fn to_json(&self) -> Value {
        match self {
            AlertSource::File { path } => json!({"file": path}),
            AlertSource::S3 { bucket, key } => json!({"bucket": bucket, "key": key}),
            AlertSource::EventBridge {
                id,
                source,
                detail_type,
            } => json!({"eventbridge": {"id": id, "source": source, "detail-type": detail_type}}),
        }
    }
}

impl AlertSource {
    /// The source of [`AlertSource::to_json`], read back.
    pub fn from_json(v: &Value) -> Option<Self> {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        if let Some(path) = s(v, "file") {
            return Some(AlertSource::File { path });
        }
        if let (Some(bucket), Some(key)) = (s(v, "bucket"), s(v, "key")) {
            return Some(AlertSource::S3 { bucket, key });
        }
        let e = v.get("eventbridge")?;
        Some(AlertSource::EventBridge {
            id: s(e, "id")?,
            source: s(e, "source")?,
            detail_type: s(e, "detail-type")?,
        })
    }
}

impl EventInfo {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                m.insert(k.into(), Value::String(v.clone()));
            }
        };
        put("eventID", &self.event_id);
        put("eventTime", &self.event_time);
        put("eventSource", &self.event_source);
        put("eventName", &self.event_name);
        put("eventType", &self.event_type);
        put("account", &self.account);
        put("region", &self.region);
        put("principal", &self.principal);
        put("actor", &self.actor);
        put("sourceIPAddress", &self.source_ip);
        put("errorCode", &self.error_code);
        put("errorMessage", &self.error_message);
        put("state", &self.state);
        Value::Object(m)
    }
}

impl Alert {
    /// The alert document (the SNS message in `json` format).
    pub fn document(&self) -> Value {
        let mut rule = json!({
            "id": self.rule_id,
            "description": self.description,
            "severity": self.severity.as_str(),
        });
        if let (Some(meta), Some(m)) = (&self.rule_meta, rule.as_object_mut()) {
            m.extend(meta.to_json());
        }
        json!({
            "rule": rule,
            "summary": self.summary,
            "event": self.event.to_json(),
            "context": self.context_json(),
            "matched": self.matched_json(),
            "record": self.record,
            "source": self.source.to_json(),
        })
    }

    /// `{"account": {"id", "name", "ou", "tags"} | null, "links": [{"title", "url"}]}`.
    pub fn context_json(&self) -> Value {
        json!({
            "account": match (&self.account_info, &self.event.account) {
                (Some(info), Some(id)) => info.to_json(id),
                _ => Value::Null,
            },
            "links": self.links().iter().map(|l| json!({"title": l.title, "url": l.url})).collect::<Vec<_>>(),
        })
    }

    /// `payments-prod (481726354019)`, or the id alone when the name is unknown.
    pub fn account_display(&self) -> Option<String> {
        let id = self.event.account.as_deref()?;
        Some(
            match self.account_info.as_ref().and_then(|i| i.name.as_deref()) {
                Some(name) => format!("{name} ({id})"),
                None => id.to_owned(),
            },
        )
    }

    /// The alert document serialized within `limit` bytes: while it is too large, the largest
    /// value inside `record` is replaced by a marker saying what was cut, and the paths cut are
    /// listed under `truncated`.
    pub fn document_within(&self, limit: usize) -> String {
        let mut doc = self.document();
        let mut cut: Vec<String> = Vec::new();
        loop {
            let text = doc.to_string();
            if text.len() <= limit {
                return text;
            }
            let Some(record) = doc.get_mut("record") else {
                return text;
            };
            let Some((path, size)) = largest(record, "$.record".into()) else {
                // Nothing left to cut inside the record: drop it whole.
                doc["record"] =
                    Value::String("[cut by trail-alerts: the record does not fit]".into());
                cut.push("$.record".into());
                doc["truncated"] = json!(cut);
                return doc.to_string();
            };
            if let Some(slot) = pointer_mut(record, &path) {
                *slot = Value::String(format!("[cut by trail-alerts: {size} bytes]"));
            }
            cut.push(path);
            doc["truncated"] = json!(cut);
        }
    }

    /// `{"eventName": "DeleteBackupVault", "errorCode": null}`: what made the rule match
    /// (`null` for a field matched by its absence).
    pub fn matched_json(&self) -> Value {
        Value::Object(
            self.matched
                .iter()
                .map(|(path, v)| (path.clone(), v.clone().unwrap_or(Value::Null)))
                .collect(),
        )
    }

    /// The flat JSON line of `scan --format jsonl`: a stable interface for scripts. Read back
    /// from [`Alert::write_json_line`], which is what the scan writes.
    pub fn json_line(&self) -> Value {
        let mut line = Vec::new();
        self.write_json_line(&mut line);
        serde_json::from_slice(&line).expect("a written JSON line reads back")
    }

    /// Appends the flat JSON line of `scan --format jsonl` (no newline), written straight into
    /// `out` (see [`crate::json`]).
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        let e = &self.event;
        let mut o = json::Object::open(out);
        o.str("rule", &self.rule_id);
        o.str("severity", self.severity.as_str());
        o.opt_str("eventID", e.event_id.as_deref());
        o.opt_str("eventName", e.event_name.as_deref());
        o.opt_str("eventSource", e.event_source.as_deref());
        o.opt_str("eventTime", e.event_time.as_deref());
        o.opt_str("account", e.account.as_deref());
        o.opt_str("region", e.region.as_deref());
        o.opt_str("principal", e.principal.as_deref());
        o.opt_str("actor", e.actor.as_deref());
        o.opt_str(
            "accountName",
            self.account_info.as_ref().and_then(|i| i.name.as_deref()),
        );
        o.opt_str("sourceIPAddress", e.source_ip.as_deref());
        o.opt_str("errorCode", e.error_code.as_deref());
        o.str("subject", &self.subject);
        o.str("summary", &self.summary);
        o.str("file", &self.source.display());
        o.value("record", &Value::from(self.record_index));
        let mut matched = json::Object::open(o.key("matched"));
        for (i, (path, _)) in self.matched.iter().enumerate() {
            // As a map collects them: a path given twice keeps its first place and its last
            // value.
            if self.matched[..i].iter().any(|(p, _)| p == path) {
                continue;
            }
            let last = self.matched.iter().rev().find(|(p, _)| p == path);
            match last.and_then(|(_, v)| v.as_ref()) {
                Some(v) => matched.value(path, v),
                None => matched.value(path, &Value::Null),
            }
        }
        matched.close();
        if self.shadow {
            o.value("shadow", &Value::Bool(true));
        }
        // An imported rule's own id and licence (the DRL asks for attribution where matches
        // are shown).
        if let Some(meta) = &self.rule_meta {
            if let Some(id) = meta.sigma.as_ref().and_then(|s| s.get("id")) {
                o.value("sigmaId", id);
            }
            if let Some(l) = &meta.license {
                o.str("license", l);
            }
        }
        o.close();
    }

    /// The alert as readable lines (an email body, the SNS message in `text` format), within
    /// `limit` bytes: a record too large is cut, and the cut is marked.
    pub fn text(&self, limit: usize) -> String {
        let e = &self.event;
        let v = |o: &Option<String>| o.as_deref().map_or_else(|| "-".into(), printable);
        let account = self.account_display();
        let mut out = format!(
        "{}\n\n{}\n\nRule:       {} ({}): {}\nEvent:      {} ({}) at {}\nAccount:    {}   Region: {}\nPrincipal:  {}\nSource IP:  {}\n",
        self.subject,
        self.summary,
        self.rule_id,
        self.severity,
        self.description,
        v(&e.event_name),
        v(&e.event_type),
        v(&e.event_time),
        v(&account),
        v(&e.region),
        v(&e.principal),
        v(&e.source_ip),
    );
        if let Some(info) = &self.account_info {
            if let Some(ou) = info.ou() {
                out.push_str(&format!("OU:         {}\n", printable(&ou)));
            }
            if !info.tags.is_empty() {
                let tags: Vec<String> = info.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("Tags:       {}\n", printable(&tags.join(", "))));
            }
        }
        if let Some(who) = &e.actor {
            out.push_str(&format!("By:         {}\n", printable(who)));
        }
        if let Some(code) = &e.error_code {
            out.push_str(&format!("Error:      {code}: {}\n", v(&e.error_message)));
        }
        if let Some(state) = &e.state {
            out.push_str(&format!("State:      {}\n", printable(state)));
        }
        if !self.matched.is_empty() {
            out.push_str(&format!(
                "Matched:    {}\n",
                printable(&describe_fields(&self.matched))
            ));
        }
        let from = match &self.source {
            AlertSource::EventBridge { .. } => format!("From:       {}", self.source.display()),
            _ => format!(
                "Log:        {} (record {})",
                self.source.display(),
                self.record_index
            ),
        };
        out.push_str(&format!("Event ID:   {}\n{from}\n", v(&e.event_id)));
        for link in &self.links() {
            out.push_str(&format!(
                "Link:       {}: {}\n",
                printable(&link.title),
                link.url
            ));
        }
        out.push_str("\nRecord:\n");
        let record =
            escape_json_text(&serde_json::to_string_pretty(&self.record).unwrap_or_default());
        let room = limit.saturating_sub(out.len());
        if record.len() <= room {
            out.push_str(&record);
        } else {
            // Cut at a character boundary and say so.
            let marker = "\n[record cut by trail-alerts: too large for SNS]";
            let mut end = room.saturating_sub(marker.len());
            while end > 0 && !record.is_char_boundary(end) {
                end -= 1;
            }
            out.push_str(&record[..end]);
            out.push_str(marker);
        }
        out
    }
}

/// The longest chat title and description (conservative for Amazon Q Developer in chat
/// applications' custom notifications), and how many next steps and keywords a message lists.
pub const CHAT_MAX_TITLE: usize = 250;
pub const CHAT_MAX_DESCRIPTION: usize = 4000;
pub const CHAT_MAX_STEPS: usize = 5;
pub const CHAT_MAX_KEYWORDS: usize = 10;

/// A value taken from a record, made inert for `client-markdown`: whatever a record says (a
/// `userAgent`, a session name, an error message — anyone able to make an API call chooses
/// them) shows as the text it is, never as a link, formatting or a mention in the operations
/// channel. Markdown's punctuation is backslash-escaped (CommonMark); `&`, `<` and `>` become
/// entities, which is Slack's own escaping and means the same in Markdown (so `<!channel>` and
/// `<https://…|text>` are inert); an `@` is followed by a word joiner (U+2060), so that
/// `@here`, `@channel` or `@someone` mention no one. Line breaks are already gone
/// (`printable`).
pub fn chat_text(s: &str) -> String {
    inert(s, true)
}

/// `chat_text` for the notification's plain-text summary (not Markdown): only what a chat
/// client acts on in plain text, Slack's control sequences and mentions, is made inert.
pub fn chat_plain(s: &str) -> String {
    inert(s, false)
}

/// Slack's control characters as entities, mentions broken, and with `markdown` Markdown's
/// punctuation escaped.
fn inert(s: &str, markdown: bool) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => out.push_str("@\u{2060}"),
            '\\' | '`' | '*' | '_' | '~' | '[' | ']' | '(' | ')' | '#' | '|' | '!' | '{' | '}'
                if markdown =>
            {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Text cut to `max` characters, ending with `…` when cut.
fn cut_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl Alert {
    /// The alert as an Amazon Q Developer in chat applications custom notification (format
    /// `chat`): a title and description readable on a phone, the rule's runbook as next steps,
    /// and the alert key as the thread, so that repeats, roll-ups and resolutions land in one
    /// thread.
    pub fn chat(&self) -> Value {
        let e = &self.event;
        let resolved =
            self.record.pointer("/detail/state").and_then(Value::as_str) == Some("RESOLVED");
        let rollup = self.record.get("rollup") == Some(&Value::Bool(true));
        let icon = if resolved {
            ":white_check_mark:"
        } else if rollup {
            ":repeat:"
        } else {
            match self.severity {
                crate::model::Severity::Critical => ":rotating_light:",
                crate::model::Severity::High => ":red_circle:",
                crate::model::Severity::Medium => ":large_orange_diamond:",
                crate::model::Severity::Low => ":large_blue_circle:",
                crate::model::Severity::Info => ":information_source:",
            }
        };
        let esc = |s: &str| chat_text(&printable(s));
        let account = e.account.as_deref().map_or_else(|| "?".to_owned(), esc);
        let place = format!(
            "{}/{}",
            match self.account_info.as_ref().and_then(|i| i.name.as_deref()) {
                Some(name) => format!("{} ({account})", esc(name)),
                None => account,
            },
            e.region.as_deref().map_or_else(|| "?".to_owned(), esc)
        );
        // Everything taken from the record goes through `chat_text`; the rule's own texts (its
        // id, description and runbook) are the rule author's Markdown.
        let title = cut_chars(
            &format!(
                "{icon} [{}] {}{} — {}",
                self.severity.as_str().to_ascii_uppercase(),
                printable(&self.rule_id),
                if resolved { " resolved" } else { "" },
                place
            ),
            CHAT_MAX_TITLE,
        );
        let v = |o: &Option<String>| o.as_deref().map(|s| chat_text(&printable(s)));
        let mut lines = vec![chat_text(&printable(&self.summary))];
        if let (Some(name), Some(time)) = (v(&e.event_name), v(&e.event_time)) {
            lines.push(format!(
                "*Event:* {name}{} at {time}",
                v(&e.state).map(|s| format!(" {s}")).unwrap_or_default()
            ));
        }
        if let Some(p) = v(&e.actor).or_else(|| v(&e.principal)) {
            lines.push(format!("*By:* {p}"));
        }
        if let Some(ou) = self.account_info.as_ref().and_then(|i| i.ou()) {
            lines.push(format!("*OU:* {}", chat_text(&printable(&ou))));
        }
        if let Some(code) = v(&e.error_code) {
            lines.push(format!("*Error:* {code}"));
        }
        if !self.matched.is_empty() {
            lines.push(format!(
                "*Matched:* {}",
                chat_text(&printable(&crate::model::describe_fields(&self.matched)))
            ));
        }
        lines.push(format!(
            "*Rule:* {} — {}",
            self.rule_id,
            printable(&self.description)
        ));
        // Links: their URLs are built with every record value percent-encoded
        // (`context::encode`), their titles escaped, so that nothing a record says leaves them.
        let links = self.links();
        if !links.is_empty() {
            let links: Vec<String> = links
                .iter()
                .map(|l| format!("[{}]({})", chat_text(&l.title), l.url))
                .collect();
            lines.push(format!("*Links:* {}", links.join(" · ")));
        }
        let description = cut_chars(&lines.join("\n"), CHAT_MAX_DESCRIPTION);
        let steps: Vec<String> = self
            .runbook
            .as_deref()
            .unwrap_or("")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(CHAT_MAX_STEPS)
            .map(printable)
            .collect();
        let keywords: Vec<String> = [
            Some(self.severity.as_str().to_owned()),
            Some(self.rule_id.clone()),
            e.account.clone(),
            e.region.clone(),
            e.state.clone(),
        ]
        .into_iter()
        .flatten()
        .filter(|k| !k.is_empty())
        .map(|k| cut_chars(&chat_text(&printable(&k)), 75))
        .take(CHAT_MAX_KEYWORDS)
        .collect();
        let mut content = json!({
            "textType": "client-markdown",
            "title": title,
            "description": description,
            "keywords": keywords,
        });
        if !steps.is_empty() {
            content["nextSteps"] = json!(steps);
        }
        json!({
            "version": "1.0",
            "source": "custom",
            "id": cut_chars(&format!("{}:{}", self.alert_key, e.event_id.as_deref().unwrap_or("-")), 256),
            "content": content,
            "metadata": {
                "threadId": cut_chars(&self.alert_key, 256),
                "summary": chat_plain(&self.subject),
                "eventType": self.rule_id,
                "relatedResources": related_resources(&self.record),
                "additionalContext": {
                    "alertKey": self.alert_key,
                    "account": e.account, "region": e.region,
                    "eventID": e.event_id, "eventTime": e.event_time,
                    "source": self.source.display(),
                },
            },
        })
    }
}

/// The ARNs an alert is about: the resource, recovery point, vault and created resource of a
/// job, or an EventBridge event's `resources` (at most five).
fn related_resources(record: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str) {
            if s.starts_with("arn:") && !out.iter().any(|o| o == s) && out.len() < 5 {
                out.push(s.to_owned());
            }
        }
    };
    for place in ["/serviceEventDetails", "/requestParameters", "/detail"] {
        for field in [
            "resourceArn",
            "recoveryPointArn",
            "backupVaultArn",
            "createdResourceArn",
        ] {
            add(record.pointer(&format!("{place}/{field}")));
        }
    }
    if let Some(Value::Array(rs)) = record.get("resources") {
        for r in rs {
            add(Some(r));
        }
    }
    out
}

/// JSON text with the characters serde leaves as they are but a terminal acts on (DEL, C1,
/// bidirectional overrides) written as `\uXXXX` escapes, which mean the same in JSON (they can
/// only stand inside strings).
fn escape_json_text(json: &str) -> String {
    if !json
        .chars()
        .any(|c| c.is_control() || super::is_bidi_control(c))
    {
        return json.to_owned();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        // serde already escapes C0 inside strings; the line breaks left are its own layout.
        if (c.is_control() && !matches!(c, '\n' | '\r' | '\t')) || super::is_bidi_control(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The path and serialized size of the largest value under `v` worth cutting (over 64 bytes),
/// preferring the deepest such value that is at least half its parent's size.
fn largest(v: &Value, path: String) -> Option<(String, usize)> {
    let size = v.to_string().len();
    if size <= 64 {
        return None;
    }
    let children: Vec<(String, &Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, c)| (format!("{path}.{k}"), c)).collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("{path}[{i}]"), c))
            .collect(),
        _ => Vec::new(),
    };
    let best = children
        .into_iter()
        .filter_map(|(p, c)| largest(c, p))
        .max_by_key(|(_, s)| *s);
    match best {
        Some((p, s)) if s * 2 >= size => Some((p, s)),
        _ if path == "$.record" => best,
        _ => Some((path, size)),
    }
}

fn pointer_mut<'v>(root: &'v mut Value, path: &str) -> Option<&'v mut Value> {
    let rest = path.strip_prefix("$.record")?;
    let mut cur = root;
    let mut chars = rest;
    while !chars.is_empty() {
        if let Some(after) = chars.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            cur = cur.get_mut(&after[..end])?;
            chars = &after[end..];
        } else if let Some(after) = chars.strip_prefix('[') {
            let end = after.find(']')?;
            let i: usize = after[..end].parse().ok()?;
            cur = cur.get_mut(i)?;
            chars = &after[end + 1..];
        } else {
            return None;
        }
    }
    Some(cur)
}
