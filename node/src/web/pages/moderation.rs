//! What reports do to a listing, on its page: a panel saying why the listing is hidden (its
//! content behind "show anyway") or carries a warning, each report with its author and
//! weight here, and the "Report" form, which the moderation service signs and gossips like
//! `POST /v1/reports`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Page, csrf_refused, short_peer, when};
use crate::api::types::{ModerationView, NewReport, ReportBasis};
use crate::services::moderation::ModerationError;
use crate::web::WebState;
use crate::web::i18n::{Messages, fill};

/// The reasons, in the form's order.
pub const REASONS: [&str; 5] = ["scam", "prohibited", "spam", "miscategorized", "duplicate"];

/// A reason's name in the page's language.
fn reason_name(t: &Messages, key: &str) -> String {
    match key {
        "scam" => t.reason_scam,
        "prohibited" => t.reason_prohibited,
        "spam" => t.reason_spam,
        "miscategorized" => t.reason_miscategorized,
        "duplicate" => t.reason_duplicate,
        other => other,
    }
    .to_owned()
}

/// One report as the panel shows it.
#[derive(Debug, Clone)]
pub struct ReportLine {
    /// "Scam — by 12D3Ko…x7Qa, weight 1.00 (your moderator), 3 h ago".
    pub line: String,
    /// The reporter's full peer id (the link's title).
    pub by: String,
    /// What the reporter wrote.
    pub text: String,
}

/// The moderation panel of a listing page.
#[derive(Debug, Clone)]
pub struct ModerationPanel {
    /// Hidden here by its reports.
    pub hidden: bool,
    /// Shown with a warning.
    pub warning: bool,
    /// The panel's heading.
    pub title: String,
    /// Why, in one sentence.
    pub summary: String,
    /// The reports.
    pub lines: Vec<ReportLine>,
}

impl ModerationPanel {
    /// The panel of a listing's moderation, if it has any report.
    pub fn new(t: &Messages, m: Option<&ModerationView>) -> Option<Self> {
        let m = m?;
        let reasons: Vec<String> = m.reasons.iter().map(|r| reason_name(t, r)).collect();
        let args = [
            ("w", format!("{:.2}", m.weight)),
            ("t", format!("{:.2}", m.threshold)),
            ("reasons", reasons.join(", ")),
        ];
        let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (title, summary) = if m.hidden {
            (t.mod_hidden_title, fill(t.mod_hidden_intro, &args))
        } else if m.warning {
            (t.mod_warning_title, fill(t.mod_warning_intro, &args))
        } else {
            (t.mod_reported_title, t.mod_untrusted_intro.to_owned())
        };
        let lines = m
            .reports
            .iter()
            .map(|r| {
                let basis = match r.basis {
                    ReportBasis::Own => t.mod_basis_own,
                    ReportBasis::Moderator => t.mod_basis_moderator,
                    ReportBasis::Trust => t.mod_basis_trust,
                };
                ReportLine {
                    line: fill(
                        t.mod_report_line,
                        &[
                            ("reason", &reason_name(t, &r.reason)),
                            ("by", &short_peer(&r.by)),
                            ("w", &format!("{:.2}", r.weight)),
                            ("basis", basis),
                            ("when", &when(t, r.at)),
                        ],
                    ),
                    by: r.by.clone(),
                    text: r.text.clone(),
                }
            })
            .collect();
        Some(ModerationPanel {
            hidden: m.hidden,
            warning: m.warning,
            title: title.to_owned(),
            summary,
            lines,
        })
    }
}

/// The report form: its choices, and what went wrong with the last one sent.
#[derive(Debug, Clone, Default)]
pub struct ReportDraft {
    /// (key, name) of each reason.
    pub reasons: Vec<(String, String)>,
    /// Why the last report was refused.
    pub error: Option<String>,
}

impl ReportDraft {
    /// An empty form.
    pub fn new(t: &Messages) -> Self {
        Self {
            reasons: REASONS
                .iter()
                .map(|r| ((*r).to_owned(), reason_name(t, r)))
                .collect(),
            error: None,
        }
    }
}

/// The report form as sent.
#[derive(Debug, Deserialize)]
pub struct ReportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    text: String,
}

/// `POST /listing/{id}/report`: reports the listing, then shows it again (with the report,
/// which counts as this node's own).
pub async fn report(
    State(w): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<ReportForm>,
) -> Response {
    if !page.session.csrf_ok(&f.csrf) {
        return csrf_refused(&page);
    }
    let text = f.text.trim();
    let new = NewReport {
        target: id.clone(),
        reason: f.reason,
        text: (!text.is_empty()).then(|| text.to_owned()),
    };
    match w.api.moderation.report(new).await {
        Ok(_) => Redirect::to(&format!("/listing/{id}")).into_response(),
        Err(e) => {
            let status = match &e {
                ModerationError::Invalid(_) => StatusCode::BAD_REQUEST,
                ModerationError::NotFound(_) => StatusCode::NOT_FOUND,
                ModerationError::Refused(_) => StatusCode::CONFLICT,
                ModerationError::Limit(_) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let mut draft = ReportDraft::new(page.t);
            draft.error = Some(fill(page.t.report_refused, &[("reason", &e.to_string())]));
            super::listing::page_with_report(&w, &page, id, status, draft).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::ReportView;
    use crate::web::i18n::{EN, JA, KO};

    fn view(hidden: bool, warning: bool, weight: f64, basis: ReportBasis) -> ModerationView {
        ModerationView {
            hidden,
            warning,
            weight,
            threshold: 1.0,
            reasons: if weight > 0.0 {
                vec!["scam".into()]
            } else {
                vec![]
            },
            reports: vec![ReportView {
                id: "ab".repeat(32),
                by: "12D3KooWRndVhVZPCiQwHBBBdg769GyrPUW13zxwqQyf9r3ANaba".into(),
                about: "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo".into(),
                listing: Some("cd".repeat(32)),
                reason: "scam".into(),
                text: "asked for payment first".into(),
                at: 1_767_225_600_000,
                weight,
                basis,
            }],
        }
    }

    #[test]
    fn the_panel_says_why_in_every_language() {
        assert!(ModerationPanel::new(&EN, None).is_none());
        let hidden =
            ModerationPanel::new(&EN, Some(&view(true, false, 1.0, ReportBasis::Moderator)))
                .expect("panel");
        assert!(hidden.hidden);
        assert_eq!(hidden.title, EN.mod_hidden_title);
        assert!(hidden.summary.contains("1.00") && hidden.summary.contains("Scam"));
        assert!(hidden.lines[0].line.contains(EN.mod_basis_moderator));
        assert!(hidden.lines[0].line.contains("12D3Ko…"));
        assert_eq!(hidden.lines[0].text, "asked for payment first");
        let warned = ModerationPanel::new(&KO, Some(&view(false, true, 0.4, ReportBasis::Trust)))
            .expect("panel");
        assert_eq!(warned.title, KO.mod_warning_title);
        assert!(warned.summary.contains("0.40") && warned.summary.contains(KO.reason_scam));
        let nothing = ModerationPanel::new(&JA, Some(&view(false, false, 0.0, ReportBasis::Trust)))
            .expect("panel");
        assert_eq!(nothing.summary, JA.mod_untrusted_intro);
        assert!(nothing.lines[0].line.contains("0.00"));
        let form = ReportDraft::new(&JA);
        assert_eq!(form.reasons.len(), REASONS.len());
        assert_eq!(
            form.reasons[0],
            ("scam".to_owned(), JA.reason_scam.to_owned())
        );
    }
}
