//! Why `clone`, `to_owned`, `into` and `try_into` are reserved: a trait shaped like a generated
//! client (implemented for every target) with methods of those names cannot be called on a
//! target. `clone` and `to_owned` are ambiguous with `Clone`/`ToOwned` (the targets are
//! `Clone`); `into` and `try_into` resolve to `Into`/`TryInto`, which take the target by value
//! and so are found first (on a `&All` receiver, both apply at once: ambiguous).
//! `clone_from` is not reserved: it takes `&mut self`, so the client's `&self` method is found
//! first.
use easy_rpc::{All, Any, Target};

pub trait Client: Target {
    fn clone(&self) -> u8;
    fn to_owned(&self) -> u8;
    fn into(&self) -> u8;
    fn try_into(&self) -> u8;
    fn clone_from(&self, x: u8) -> u8;
}

impl<T: Target + ?Sized> Client for T {
    fn clone(&self) -> u8 {
        0
    }
    fn to_owned(&self) -> u8 {
        0
    }
    fn into(&self) -> u8 {
        0
    }
    fn try_into(&self) -> u8 {
        0
    }
    fn clone_from(&self, x: u8) -> u8 {
        x
    }
}

fn on_a_target(any: Any, all: &All) {
    let _: u8 = any.clone();
    let _: u8 = any.to_owned();
    let _: u8 = any.try_into();
    let _: u8 = all.into();
    let _: u8 = any.clone_from(1);
}

fn main() {
    let _ = on_a_target;
}
