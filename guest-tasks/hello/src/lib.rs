//! The `hello` task: greets by name on stdout and on stderr, and returns the greeting (to test
//! the capture of a guest's output).

wit_bindgen::generate!({ path: "../../wit", world: "hello" });

struct Hello;

impl Guest for Hello {
    fn hello(name: String) -> String {
        let greeting = format!("hello, {name}!");
        println!("{greeting}");
        eprintln!("greeting {name}");
        greeting
    }
}

export!(Hello);
