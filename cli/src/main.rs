fn main() {
    println!("ember");
}
