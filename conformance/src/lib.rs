//! openshell-conformance (placeholder)
