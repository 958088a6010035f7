// `sqlx::migrate!` embeds the migrations when the crate compiles; this makes a new or changed migration file
// rebuild the crate (cargo tracks nothing under migrations/ otherwise).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
