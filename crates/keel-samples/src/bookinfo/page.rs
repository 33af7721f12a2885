//! productpage's HTML, shaped like Istio's Jinja templates (`productpage.html`, `index.html`):
//! the same title, Bootstrap 3 class names (`glyphicon glyphicon-star` stars inside
//! `<font color="...">`), texts and error messages, so that what people grep for in Istio's
//! tasks is there. The sign-in form is inline rather than a JavaScript modal, and a small local
//! stylesheet (`static/bookinfo.css`) replaces Bootstrap from a CDN.

use serde_json::Value;

use crate::bookinfo::Product;
use crate::http_util::escape_html as esc;

/// What the product page shows.
#[derive(Debug)]
pub struct PageView<'a> {
    /// The signed-in user, if any.
    pub user: Option<&'a str>,
    /// The book.
    pub product: &'a Product,
    /// details' status and JSON (or `{"error": ...}`).
    pub details: (u16, &'a Value),
    /// reviews' status and JSON (or `{"error": ...}`).
    pub reviews: (u16, &'a Value),
}

/// The stylesheet served at `/static/bookinfo.css`: enough of Bootstrap's look for the page,
/// with the glyphicon stars drawn as characters.
pub const STYLESHEET: &str = r#"body{font-family:"Helvetica Neue",Helvetica,Arial,sans-serif;margin:0;color:#333}
.navbar{background:#222;color:#9d9d9d;padding:10px 15px;overflow:hidden}
.navbar-brand{color:#fff;font-size:18px;text-decoration:none;line-height:34px}
.navbar-right{float:right}.navbar-header{float:left}.navbar-text{margin:7px 0}
.navbar a{color:#ddd}.form-control{padding:6px;margin-right:4px}
.container-fluid{padding:0 15px}.row{display:flex;flex-wrap:wrap}
.col-md-12{flex:0 0 100%}.col-md-6{flex:1 1 45%;padding:0 10px}
.text-center{text-align:center}.text-primary{color:#337ab7}
blockquote{border-left:5px solid #eee;margin:0 0 20px;padding:10px 20px}
blockquote small{display:block;color:#777}
.glyphicon-star:before{content:"\2605"}.glyphicon-star-empty:before{content:"\2606"}
.glyphicon-user:before{content:"\263A"}
"#;

/// The product page: navbar with sign-in, the book, details and reviews.
pub fn product_page(view: &PageView<'_>) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str(HEAD);
    out.push_str("<nav class=\"navbar navbar-inverse navbar-static-top\">\n  <div class=\"container\">\n    <div class=\"navbar-header\">\n      <a class=\"navbar-brand\" href=\"#\">BookInfo Sample</a>\n    </div>\n");
    match view.user {
        Some(user) => out.push_str(&format!(
            "    <p class=\"navbar-text navbar-right\">\n      <i class=\"glyphicon glyphicon-user\" aria-hidden=\"true\"></i>\n      <span style=\"padding-left: 5px;\">{} ( <a href=\"logout\">sign out</a> )</span>\n    </p>\n",
            esc(user)
        )),
        None => out.push_str(SIGN_IN_FORM),
    }
    out.push_str("  </div>\n</nav>\n\n<div class=\"container-fluid\">\n  <div class=\"row\">\n    <div class=\"col-md-12\">\n");
    out.push_str(&format!(
        "      <h3 class=\"text-center text-primary\">{}</h3>\n      <p>Summary: {}</p>\n",
        esc(view.product.title),
        view.product.description_html
    ));
    out.push_str("    </div>\n  </div>\n\n  <div class=\"row\">\n    <div class=\"col-md-6\">\n");
    details_block(&mut out, view.details);
    out.push_str("    </div>\n\n    <div class=\"col-md-6\">\n");
    reviews_block(&mut out, view.reviews);
    out.push_str("    </div>\n  </div>\n</div>\n</body>\n</html>\n");
    out
}

const HEAD: &str = "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1.0\">\n<title>Simple Bookstore App</title>\n<link rel=\"stylesheet\" href=\"static/bookinfo.css\">\n</head>\n<body>\n";

const SIGN_IN_FORM: &str = "    <form class=\"navbar-form navbar-right\" method=\"post\" action=\"login\" name=\"login_form\">\n      <input type=\"text\" class=\"form-control\" name=\"username\" id=\"username\" placeholder=\"User Name\">\n      <input type=\"password\" class=\"form-control\" name=\"passwd\" placeholder=\"Password\">\n      <button type=\"submit\" class=\"btn btn-primary\">Sign in</button>\n    </form>\n";

/// A JSON value as template text: strings bare, `null`/missing empty, others as JSON.
fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => esc(s),
        Some(other) => esc(&other.to_string()),
    }
}

fn details_block(out: &mut String, (status, details): (u16, &Value)) {
    if status == 200 {
        out.push_str(
            "      <h4 class=\"text-center text-primary\">Book Details</h4>\n      <dl>\n",
        );
        for (label, key) in [
            ("Type", "type"),
            ("Pages", "pages"),
            ("Publisher", "publisher"),
            ("Language", "language"),
            ("ISBN-10", "ISBN-10"),
            ("ISBN-13", "ISBN-13"),
        ] {
            out.push_str(&format!(
                "        <dt>{label}:</dt>{}\n",
                text(details.get(key))
            ));
        }
        out.push_str("      </dl>\n");
    } else {
        out.push_str(
            "      <h4 class=\"text-center text-primary\">Error fetching product details!</h4>\n",
        );
        out.push_str(&format!("      <p>{}</p>\n", text(details.get("error"))));
    }
}

fn reviews_block(out: &mut String, (status, reviews): (u16, &Value)) {
    if status != 200 {
        out.push_str(
            "      <h4 class=\"text-center text-primary\">Error fetching product reviews!</h4>\n",
        );
        out.push_str(&format!("      <p>{}</p>\n", text(reviews.get("error"))));
        return;
    }
    out.push_str("      <h4 class=\"text-center text-primary\">Book Reviews</h4>\n");
    let list = reviews.get("reviews").and_then(Value::as_array);
    for review in list.into_iter().flatten() {
        out.push_str(&format!(
            "      <blockquote>\n        <p>{}</p>\n        <small>{}</small>\n",
            text(review.get("text")),
            text(review.get("reviewer"))
        ));
        if let Some(rating) = review.get("rating") {
            rating_block(out, rating);
        }
        out.push_str("      </blockquote>\n");
    }
    let pod = text(reviews.get("podname"));
    let cluster = match reviews.get("clustername").and_then(Value::as_str) {
        Some(c) if c != "null" && !c.is_empty() => format!(" on cluster {}", esc(c)),
        _ => String::new(),
    };
    out.push_str(&format!(
        "      <p><small>Reviews served by: {pod}{cluster}</small></p>\n"
    ));
}

fn rating_block(out: &mut String, rating: &Value) {
    let stars = rating.get("stars").and_then(Value::as_i64).unwrap_or(0);
    if stars != 0 {
        let full = usize::try_from(stars.clamp(0, 5)).unwrap_or(0);
        out.push_str(&format!(
            "        <font color=\"{}\">\n          <!-- full stars: -->\n",
            text(rating.get("color"))
        ));
        out.push_str(&"          <span class=\"glyphicon glyphicon-star\"></span>\n".repeat(full));
        out.push_str("          <!-- empty stars: -->\n");
        out.push_str(
            &"          <span class=\"glyphicon glyphicon-star-empty\"></span>\n".repeat(5 - full),
        );
        out.push_str("        </font>\n");
    } else if let Some(error) = rating.get("error").filter(|e| !e.is_null()) {
        out.push_str(&format!("        <p><i>{}</i></p>\n", text(Some(error))));
    }
}

/// The index page (`/`): the services and links that generate a request as a normal user or a
/// tester, as Istio's `index.html` (whose table lists productpage, details and reviews with
/// their children).
pub fn index_page(details: &str, reviews: &str, ratings: &str) -> String {
    let mut out = String::from(HEAD);
    out.push_str("<p><h3>Hello! This is a simple bookstore application consisting of three services as shown below</h3></p>\n");
    out.push_str("<table class=\"table table-condensed table-bordered table-hover\">\n<tr><th>service</th><th>name</th><th>endpoint</th><th>children</th></tr>\n");
    for (service, name, endpoint, children) in [
        ("productpage", details, "details", "details, reviews"),
        ("details", details, "details", ""),
        ("reviews", reviews, "reviews", "ratings"),
        ("ratings", ratings, "ratings", ""),
    ] {
        out.push_str(&format!(
            "<tr><td>{service}</td><td>{}</td><td>{endpoint}</td><td>{children}</td></tr>\n",
            esc(name)
        ));
    }
    out.push_str("</table>\n<p><h4>Click on one of the links below to auto generate a request to the backend as a real user or a tester\n</h4></p>\n<p><a href=\"/productpage?u=normal\">Normal user</a></p>\n<p><a href=\"/productpage?u=test\">Test user</a></p>\n</body>\n</html>\n");
    out
}
