//! One way to run a command inside a root tree: namespaces, `/proc` `/dev` `/sys`, `pivot_root`,
//! capabilities and cgroups, torn down when the command ends.
