//! Typed requirement ids: [`Req`] has one variant per requirement heading of `SPEC.md`,
//! generated at build time (`build.rs`), so a case cannot name an id SPEC.md lacks. Reports
//! spell them with [`Req::id`] (`OSC-ERR-001`).

use std::fmt;

include!(concat!(env!("OUT_DIR"), "/requirement_ids.rs"));

impl Req {
    /// The id named `id` (`OSC-ERR-001`), if SPEC.md defines it.
    pub fn parse(id: &str) -> Option<Req> {
        Req::ALL.into_iter().find(|r| r.id() == id)
    }

    /// The requirement's full entry (strength, level, source, text).
    pub fn requirement(self) -> crate::spec::Requirement {
        crate::spec::requirements::find(self.id())
            .expect("every generated id is a heading of the compiled-in SPEC.md")
    }

    /// `core` or `extended`.
    pub fn level(self) -> crate::spec::Level {
        self.requirement().level
    }
}

impl fmt::Display for Req {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl serde::Serialize for Req {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_id_is_a_requirement_of_spec_md_and_back() {
        let parsed: Vec<String> = crate::spec::requirements::all()
            .into_iter()
            .map(|r| r.id)
            .collect();
        let generated: Vec<&str> = Req::ALL.iter().map(|r| r.id()).collect();
        assert_eq!(parsed, generated);
        assert_eq!(Req::parse("OSC-ERR-001"), Some(Req::ERR_001));
        assert_eq!(Req::parse("OSC-ERR-999"), None);
    }
}
