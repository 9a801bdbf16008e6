//! The image description: KIWI XML or YAML read into one typed model, upgraded, included,
//! validated, and resolved for the selected profiles, architecture and build type.
