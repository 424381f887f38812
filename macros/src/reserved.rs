//! Method names a service cannot use, because callers could not call a service method of that
//! name on a target (`easy_rpc::any(..)`, `all(..)`, `by_key(..)`), and why.
//!
//! A service's client methods come from a trait implemented for every target, so a target's
//! own method of the same name, or a method of a prelude trait that applies to targets, either
//! wins (the service method cannot be called with method syntax) or makes the call ambiguous
//! (`error[E0034]`). The test below reads easy-rpc's sources and checks that this list and the
//! targets' real methods agree.

/// Methods the targets themselves have (inherent methods, which win over a trait's). The test
/// checks that every method callable on a target is reserved, and that each name here still is
/// one.
const TARGET_METHODS: &[&str] = &[
    "timeout",
    "strategy",
    "role",
    "owner",
    "wait_for_node",
    "retries",
    "attempt_timeout",
    "hedge",
];

/// A method of a prelude trait that applies to the targets and clashes with a client method of
/// the same name.
struct PreludeMethod {
    /// The method's name.
    name: &'static str,
    /// The trait (all in the 2021 and 2024 preludes).
    path: &'static str,
    /// Whether it applies to targets because they are `Clone`: then `target.name()` is
    /// ambiguous. Else it applies to every type and takes `self` by value, so it is found
    /// before the client method (which takes `&self`) and `target.name()` calls it.
    needs_clone: bool,
}

/// Proven by `tests/ui/fail/prelude_clash.rs` in easy-rpc (a trait shaped like a generated
/// client, with these methods, called on targets). The other methods of prelude traits do not
/// clash and are allowed (`tests/ui/pass/prelude_names.rs`): `clone_from` takes `&mut self`, so
/// the client's `&self` method is found first; `to_string`, `eq`, `cmp`, `max`, `as_ref`,
/// `into_iter`, `into_future`, ... belong to traits the targets do not implement; `drop` cannot
/// be called as a method; the methods of `Fn*` are unstable.
const PRELUDE_METHODS: &[PreludeMethod] = &[
    PreludeMethod {
        name: "clone",
        path: "Clone::clone",
        needs_clone: true,
    },
    PreludeMethod {
        name: "to_owned",
        path: "ToOwned::to_owned",
        needs_clone: true,
    },
    PreludeMethod {
        name: "into",
        path: "Into::into",
        needs_clone: false,
    },
    PreludeMethod {
        name: "try_into",
        path: "TryInto::try_into",
        needs_clone: false,
    },
];

/// Names starting with this are the plumbing between generated code and the runtime
/// (`Target::__call`, the generated `static`s), present and future.
const PLUMBING_PREFIX: &str = "__";

/// Why a service method cannot be called `name` (as written, without `r#`), if it cannot.
pub fn reason(name: &str) -> Option<String> {
    if TARGET_METHODS.contains(&name) {
        return Some(format!(
            "`{name}` is a method of the call targets (`any(..).{name}(..)`), so callers could \
             not reach this one: rename it"
        ));
    }
    if let Some(m) = PRELUDE_METHODS.iter().find(|m| m.name == name) {
        let clash = if m.needs_clone {
            format!(
                "is ambiguous (error[E0034]) with `{}`: the call targets are `Clone`",
                m.path
            )
        } else {
            format!(
                "calls `{}` (a prelude trait of every type), which takes the target by value \
                 and so is found before the client method",
                m.path
            )
        };
        return Some(format!(
            "`any(..).{name}(..)` {clash}, so callers could not reach this method: rename it"
        ));
    }
    if name.starts_with(PLUMBING_PREFIX) {
        return Some(format!(
            "method names starting with `{PLUMBING_PREFIX}` are reserved for the code \
             #[easy_rpc::service] generates and the easy_rpc runtime: rename this method"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use syn::{ImplItem, Item, TraitItem, Type, Visibility};

    use super::*;

    /// What the easy-rpc sources say about the targets.
    #[derive(Debug, Default)]
    struct Targets {
        /// The types that implement `Target`.
        types: BTreeSet<String>,
        /// Of those, the ones that are `Clone` (derived or implemented).
        clone: BTreeSet<String>,
        /// Every method callable on a target, with where it comes from.
        methods: BTreeMap<String, String>,
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Every item of the easy-rpc sources, inline modules' items included.
    fn easy_rpc_items() -> Vec<Item> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../easy-rpc/src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        assert!(
            files.len() >= 3,
            "expected the easy-rpc sources in {}",
            src.display()
        );
        let mut items = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let parsed = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("parsing {}: {e}", file.display()));
            flatten(parsed.items, &mut items);
        }
        items
    }

    fn flatten(items: Vec<Item>, out: &mut Vec<Item>) {
        for item in items {
            if let Item::Mod(m) = &item
                && let Some((_, inner)) = &m.content
            {
                flatten(inner.clone(), out);
            }
            out.push(item);
        }
    }

    /// The last segment of a path type (`crate::target::Any` -> `Any`).
    fn type_name(ty: &Type) -> Option<String> {
        match ty {
            Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
            _ => None,
        }
    }

    fn targets() -> Targets {
        let items = easy_rpc_items();
        let mut t = Targets::default();
        let impls: Vec<&syn::ItemImpl> = items
            .iter()
            .filter_map(|i| match i {
                Item::Impl(i) => Some(i),
                _ => None,
            })
            .collect();
        let trait_of = |i: &syn::ItemImpl| {
            i.trait_
                .as_ref()
                .and_then(|(_, path, _)| path.segments.last())
                .map(|s| s.ident.to_string())
        };

        for i in &impls {
            if trait_of(i).as_deref() == Some("Target") {
                t.types.extend(type_name(&i.self_ty));
            }
        }
        for i in &impls {
            if trait_of(i).as_deref() == Some("Clone")
                && let Some(ty) = type_name(&i.self_ty)
                && t.types.contains(&ty)
            {
                t.clone.insert(ty);
            }
        }
        for item in &items {
            let (ident, attrs) = match item {
                Item::Struct(s) => (&s.ident, &s.attrs),
                Item::Enum(e) => (&e.ident, &e.attrs),
                _ => continue,
            };
            let derives_clone = attrs.iter().any(|a| {
                a.path().is_ident("derive")
                    && a.meta.require_list().is_ok_and(|l| {
                        l.tokens
                            .to_string()
                            .split(',')
                            .any(|d| d.trim().ends_with("Clone"))
                    })
            });
            if derives_clone && t.types.contains(&ident.to_string()) {
                t.clone.insert(ident.to_string());
            }
        }

        // Inherent methods with a receiver, callable from outside the crate (`pub`).
        for i in &impls {
            let Some(ty) = type_name(&i.self_ty) else {
                continue;
            };
            if i.trait_.is_some() || !t.types.contains(&ty) {
                continue;
            }
            for item in &i.items {
                if let ImplItem::Fn(f) = item
                    && matches!(f.vis, Visibility::Public(_))
                    && f.sig.receiver().is_some()
                {
                    t.methods.insert(
                        f.sig.ident.to_string(),
                        format!("inherent method of `{ty}`"),
                    );
                }
            }
        }
        // Methods with a receiver of the crate's public traits implemented by a target
        // (`Target` itself, and any other).
        let implemented: BTreeSet<String> = impls
            .iter()
            .filter(|i| type_name(&i.self_ty).is_some_and(|ty| t.types.contains(&ty)))
            .filter_map(|i| trait_of(i))
            .collect();
        for item in &items {
            if let Item::Trait(tr) = item
                && matches!(tr.vis, Visibility::Public(_))
                && implemented.contains(&tr.ident.to_string())
            {
                for item in &tr.items {
                    if let TraitItem::Fn(f) = item
                        && f.sig.receiver().is_some()
                    {
                        t.methods.insert(
                            f.sig.ident.to_string(),
                            format!("method of trait `{}`", tr.ident),
                        );
                    }
                }
            }
        }
        t
    }

    #[test]
    fn finds_the_targets() {
        let t = targets();
        for ty in ["Any", "All", "ByKey"] {
            assert!(t.types.contains(ty), "{ty} implements Target: {t:#?}");
        }
        assert!(
            t.methods.contains_key("timeout") && t.methods.keys().any(|m| m.starts_with("__")),
            "{t:#?}"
        );
    }

    /// A new method on a target fails this test until its name is reserved here (and a stale
    /// name fails it until it is removed).
    #[test]
    fn every_target_method_is_reserved() {
        let t = targets();
        for (name, origin) in &t.methods {
            assert!(
                reason(name).is_some(),
                "`{name}` ({origin}) is callable on the targets, so a service method of that \
                 name would be unreachable: add it to TARGET_METHODS"
            );
        }
        for name in TARGET_METHODS {
            assert!(
                t.methods.contains_key(*name),
                "`{name}` is reserved as a target method, but no target has it: remove it \
                 from TARGET_METHODS (found: {:?})",
                t.methods.keys().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn every_reserved_prelude_method_applies_to_a_target() {
        let t = targets();
        for m in PRELUDE_METHODS {
            assert!(
                !m.needs_clone || !t.clone.is_empty(),
                "`{}` is reserved because targets are `Clone`, but none is: {t:#?}",
                m.name
            );
            assert!(!TARGET_METHODS.contains(&m.name), "{}", m.name);
            assert!(reason(m.name).unwrap().contains(m.path), "{}", m.name);
        }
    }

    #[test]
    fn reasons() {
        assert!(
            reason("timeout")
                .unwrap()
                .contains("method of the call targets")
        );
        assert!(reason("clone").unwrap().contains("`Clone::clone`"));
        assert!(reason("into").unwrap().contains("calls `Into::into`"));
        assert!(reason("__call").unwrap().contains("starting with `__`"));
        assert!(reason("__").is_some());
        for allowed in [
            "call",
            "balance",
            "clone_from",
            "to_string",
            "_private",
            "eq",
        ] {
            assert_eq!(reason(allowed), None, "{allowed}");
        }
    }
}
