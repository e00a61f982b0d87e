//! Assertions that return a [`Failure`] instead of panicking (tonic interop's `TestAssertion`,
//! youki's `test_result!`), so one broken expectation never brings the runner down and every
//! failure says which requirement, what was expected and what was observed.

use std::fmt;

use crate::observe::Snapshot;
use crate::spec::Req;

/// A failed expectation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Failure {
    /// The requirement the expectation belongs to.
    pub requirement: Req,
    /// Other requirements the same observation breaks (a fixture case's every requirement).
    pub also: Vec<Req>,
    /// Requirements the case checked and found held before this failure (a MUST whose SHOULD
    /// then failed).
    pub held: Vec<Req>,
    /// What the requirement asks for.
    pub expected: String,
    /// What the suite saw.
    pub observed: String,
    /// Extra explanation (e.g. upstream naming).
    pub note: Option<String>,
    /// The status history of the case's sandboxes, from their watch streams (filled by the runner).
    pub history: Vec<Snapshot>,
    /// The tail of the backend output of the case's sandboxes (filled by the runner).
    pub logs: Vec<String>,
}

impl Failure {
    /// Every requirement the failure breaks: the main one first.
    pub fn requirements(&self) -> Vec<Req> {
        let mut all = vec![self.requirement];
        for r in &self.also {
            if !all.contains(r) {
                all.push(*r);
            }
        }
        all
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}; observed {}",
            self.requirement, self.expected, self.observed
        )?;
        if let Some(note) = &self.note {
            write!(f, " ({note})")?;
        }
        if !self.history.is_empty() {
            write!(f, "\n  status history:")?;
            for s in &self.history {
                write!(f, "\n    {s}")?;
            }
        }
        Ok(())
    }
}

/// Why a case did not pass.
#[derive(Debug, Clone, PartialEq)]
pub enum CaseError {
    /// An expectation failed.
    Failed(Box<Failure>),
    /// A prerequisite is missing (named).
    Skipped(String),
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaseError::Failed(failure) => failure.fmt(f),
            CaseError::Skipped(why) => write!(f, "skipped: {why}"),
        }
    }
}

/// What a case body returns.
pub type CaseResult<T = ()> = Result<T, CaseError>;

/// A failure of `requirement`.
pub fn fail(
    requirement: Req,
    expected: impl Into<String>,
    observed: impl Into<String>,
) -> CaseError {
    CaseError::Failed(Box::new(Failure {
        requirement,
        also: Vec::new(),
        held: Vec::new(),
        expected: expected.into(),
        observed: observed.into(),
        note: None,
        history: Vec::new(),
        logs: Vec::new(),
    }))
}

/// Adds requirements the same failure also breaks (no-op for a skip).
pub fn also(error: CaseError, requirements: &[Req]) -> CaseError {
    match error {
        CaseError::Failed(mut f) => {
            for r in requirements {
                if *r != f.requirement && !f.also.contains(r) {
                    f.also.push(*r);
                }
            }
            CaseError::Failed(f)
        }
        skipped => skipped,
    }
}

/// Records requirements the case found held before `error` (no-op for a skip).
pub fn held(error: CaseError, requirements: &[Req]) -> CaseError {
    match error {
        CaseError::Failed(mut f) => {
            f.held.extend(requirements.iter().copied());
            CaseError::Failed(f)
        }
        skipped => skipped,
    }
}

/// Adds a note to a failure (no-op for a skip).
pub fn with_note(error: CaseError, note: Option<String>) -> CaseError {
    match (error, note) {
        (CaseError::Failed(mut f), Some(n)) => {
            f.note = Some(n);
            CaseError::Failed(f)
        }
        (e, _) => e,
    }
}

/// `Ok(())` when `holds`, else a failure of `requirement`.
pub fn ensure(
    holds: bool,
    requirement: Req,
    expected: &str,
    observed: impl FnOnce() -> String,
) -> CaseResult {
    if holds {
        Ok(())
    } else {
        Err(fail(requirement, expected, observed()))
    }
}

/// A missing prerequisite.
pub fn skip(why: impl Into<String>) -> CaseError {
    CaseError::Skipped(why.into())
}

/// The gRPC code name as the spec writes it (`InvalidArgument`, `NotFound`…).
pub fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
}

/// Expects `result` to be a gRPC error with `code`.
pub fn expect_code<T: fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    requirement: Req,
    what: &str,
) -> CaseResult {
    match result {
        Err(status) if status.code() == code => Ok(()),
        Err(status) => Err(fail(
            requirement,
            format!("{what} to fail with {}", code_name(code)),
            format!("{}: {}", code_name(status.code()), status.message()),
        )),
        Ok(value) => Err(fail(
            requirement,
            format!("{what} to fail with {}", code_name(code)),
            format!("success: {value:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_requirement_expected_and_observed() {
        let e = ensure(false, Req::API_001, "InvalidArgument", || "Ok".into()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "OSC-API-001: expected InvalidArgument; observed Ok"
        );
    }

    #[test]
    fn a_failure_lists_every_requirement_it_breaks_once() {
        let e = also(
            fail(Req::BOOT_001, "x", "y"),
            &[Req::API_009, Req::BOOT_001],
        );
        let CaseError::Failed(f) = e else { panic!() };
        assert_eq!(f.requirements(), vec![Req::BOOT_001, Req::API_009]);
    }

    #[test]
    fn expect_code_reports_the_code_it_saw() {
        let r: Result<(), _> = Err(tonic::Status::not_found("no such sandbox"));
        let e = expect_code(r, tonic::Code::InvalidArgument, Req::API_002, "create").unwrap_err();
        assert!(
            e.to_string().contains("observed NotFound: no such sandbox"),
            "{e}"
        );
        assert!(expect_code(
            Err::<(), _>(tonic::Status::not_found("")),
            tonic::Code::NotFound,
            Req::API_004,
            "get"
        )
        .is_ok());
    }
}
