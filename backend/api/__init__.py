"""flask-smorest Blueprints (MethodView) with their marshmallow schemas beside them."""
