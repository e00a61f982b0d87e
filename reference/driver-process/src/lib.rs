//! openshell-driver-process (placeholder)
