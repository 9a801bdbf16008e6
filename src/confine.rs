//! Writes confined to a root directory: every path is resolved inside the root, so `..`,
//! absolute symlinks and hardlinks can never reach outside it. Used by every stage that unpacks
//! untrusted archives.
