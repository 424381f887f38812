//! On something else than a trait: one error, and the item is kept as it is.
#[easy_rpc::service]
pub struct Service {
    field: u8,
}

fn main() {
    let s = Service { field: 1 };
    let _ = s.field;
}
