fn main() {
    println!("firedrill");
}
