//! Every example policy shipped in policies/ must parse.

#[test]
fn every_shipped_policy_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            let text = std::fs::read_to_string(&p).unwrap();
            if let Err(e) = lifeboat::policy::parse(&p.display().to_string(), &text) {
                panic!("{e}");
            }
            n += 1;
        }
    }
    assert!(n >= 3, "expected the example policies, found {n}");
}
