use super::*;
use crate::Spec;
use crate::model::kube::checks::check_yaml;

#[test]
fn base64_round_trips_and_rejects_garbage() {
    for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
        let enc = base64_encode(s.as_bytes());
        assert_eq!(base64_decode(&enc), Ok(s.as_bytes().to_vec()), "{s} {enc}");
    }
    assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64_encode(b"fo"), "Zm8=");
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(base64_decode(&base64_encode(&all)), Ok(all));
    assert_eq!(base64_decode("Zm9v\nYmFy\r\n"), Ok(b"foobar".to_vec()));
    assert_eq!(base64_decode("Zg=\n="), Ok(b"f".to_vec()));
    assert_eq!(
        base64_decode("Zm9v!"),
        Err("illegal base64 data at input byte 4".into())
    );
    assert!(base64_decode("Zm9").is_err(), "padding is required");
    assert!(base64_decode("Zg=").is_err());
    assert!(base64_decode("Z===").is_err());
    assert!(base64_decode("Zg==Zg==").is_err());
    assert!(
        base64_decode("Zm9v-_").is_err(),
        "URL alphabet is not accepted"
    );
}

fn secret(body: &str) -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: istio-system}}\n{body}")
}

#[test]
fn tls_secrets() {
    let cert = base64_encode(b"-----BEGIN CERTIFICATE-----");
    let text = secret(&format!(
        "type: kubernetes.io/tls\ndata:\n  tls.crt: {cert}\n  tls.key: a2V5\n  ca.crt: Y2E=\n"
    ));
    assert!(check_yaml(&text).is_empty(), "{:?}", check_yaml(&text));
    let loaded = crate::load_str(&text, "k.yaml", &crate::LoadOptions::default());
    let Spec::Secret(s) = &loaded.resources[0].spec else {
        panic!("not a secret")
    };
    assert_eq!(s.secret_type(), TLS_SECRET_TYPE);
    let tls = s.tls_material().expect("tls material");
    assert_eq!(tls.cert, b"-----BEGIN CERTIFICATE-----");
    assert_eq!(tls.key, b"key");
    assert_eq!(tls.ca.as_deref(), Some(&b"ca"[..]));
    assert_eq!(
        s.keys().collect::<Vec<_>>(),
        vec!["ca.crt", "tls.crt", "tls.key"]
    );

    let e = check_yaml(&secret(
        "type: kubernetes.io/tls\ndata:\n  tls.crt: Y2VydA==\n",
    ));
    assert!(
        e.len() == 1
            && e[0].contains("warning")
            && e[0].contains(
                "data: Required value: a kubernetes.io/tls Secret needs the key \"tls.key\""
            ),
        "{e:?}"
    );
    // stringData counts.
    assert!(
        check_yaml(&secret(
            "type: kubernetes.io/tls\ndata:\n  tls.crt: Y2VydA==\nstringData:\n  tls.key: k\n"
        ))
        .is_empty()
    );
}

#[test]
fn generic_secrets() {
    let text = secret(
        "data:\n  cert: Y2VydA==\n  key: a2V5\n  cacert: Y2E=\n  tls.crt: b3RoZXI=\n  tls.key: b3RoZXI=\nstringData:\n  key: plain\n",
    );
    assert!(check_yaml(&text).is_empty(), "{:?}", check_yaml(&text));
    let loaded = crate::load_str(&text, "k.yaml", &crate::LoadOptions::default());
    let Spec::Secret(s) = &loaded.resources[0].spec else {
        panic!("not a secret")
    };
    assert_eq!(s.secret_type(), "Opaque");
    // Generic keys win over tls.*; stringData wins over data.
    let tls = s.tls_material().expect("tls material");
    assert_eq!(
        (tls.cert.as_slice(), tls.key.as_slice()),
        (&b"cert"[..], &b"plain"[..])
    );
    assert_eq!(s.get("missing"), None);
    assert!(Secret::default().tls_material().is_none());

    let e = check_yaml(&secret(
        "data:\n  token: not base64!\n  ..x: YQ==\nstringData:\n  'a b': c\n",
    ));
    assert!(
        e[0].contains("data[..x]: Invalid value: \"..x\": must not start with '..'"),
        "{e:?}"
    );
    assert!(
        e[1].contains("stringData.a b: Invalid value: \"a b\": a valid config key"),
        "{e:?}"
    );
    assert!(
        e[2].contains(
            "data.token: illegal base64 data at input byte 3: data values must be base64-encoded"
        ),
        "{e:?}"
    );
}
