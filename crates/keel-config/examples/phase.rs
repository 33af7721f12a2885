fn main() {
    let text0 = std::fs::read_to_string("/tmp/corpus.yaml").unwrap();
    let t = std::time::Instant::now();
    let r: Result<Vec<serde_json::Value>, _> = serde_saphyr::from_multiple(&text0);
    println!("saphyr {:?} {:?}", t.elapsed(), r.as_ref().map(|v| v.len()).map_err(|e| e.to_string().chars().take(200).collect::<String>()));
    let text = std::fs::read_to_string("/tmp/corpus.yaml").unwrap();
    let t = std::time::Instant::now();
    let (docs, _) = keel_config::yaml::load_documents(&text, Default::default());
    println!("load_documents {:?} {}", t.elapsed(), docs.len());
    let t = std::time::Instant::now();
    let mut p = granit_parser::Parser::new_from_str(&text);
    let mut n = 0; while let Some(Ok(_)) = p.next_event() { n += 1; }
    println!("raw events {:?} {}", t.elapsed(), n);
    let t = std::time::Instant::now();
    let l = keel_config::load_str(&text, "x", &Default::default());
    println!("load_str {:?} {}", t.elapsed(), l.resources.len());
    let t = std::time::Instant::now();
    let d = keel_config::validate_resources(&l.resources, "istio-system");
    println!("validate {:?} {}", t.elapsed(), d.len());
}
#[allow(dead_code)]
fn unused() {}
