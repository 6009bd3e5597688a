"""The six demo databases: schemas and deterministic, realistic-looking rows.

Each domain is a list of `CREATE TABLE` statements (with primary and foreign keys) and a function
that draws its rows from a seeded `random.Random`, so every machine builds byte-identical
databases. The people, places and things are invented from the word lists below; the sizes (tens
to a few hundred rows per table) are large enough for GROUP BY, HAVING and superlatives to be
interesting and small enough to build in a fraction of a second.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

FIRST = [
    "Ana", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hugo", "Irene", "Jonas", "Kira", "Liam",
    "Maya", "Nina", "Omar", "Paula", "Quentin", "Rosa", "Samir", "Tara", "Umar", "Vera", "Walter", "Xenia",
    "Yusuf", "Zoe", "Aiko", "Bruno", "Chloe", "Diego", "Emma", "Felix", "Hana", "Ivan", "Julia", "Karl",
    "Lucia", "Marco", "Noor", "Oscar",
]  # fmt: skip
LAST = [
    "Silva", "Novak", "Garcia", "Schmidt", "Rossi", "Dubois", "Jensen", "Kowalski", "Murphy", "Tanaka",
    "Okafor", "Larsen", "Costa", "Weber", "Moreau", "Horvat", "Lindqvist", "Petrov", "Santos", "Fischer",
    "Nakamura", "Byrne", "Ortiz", "Keller", "Varga", "Mendes", "Brandt", "Rahman", "Fontaine", "Quinn",
]  # fmt: skip
PLACES = [
    ("Lisbon", "Portugal"), ("Porto", "Portugal"), ("Madrid", "Spain"), ("Valencia", "Spain"),
    ("Paris", "France"), ("Lyon", "France"), ("Berlin", "Germany"), ("Munich", "Germany"),
    ("Rome", "Italy"), ("Milan", "Italy"), ("London", "United Kingdom"), ("Dublin", "Ireland"),
    ("Amsterdam", "Netherlands"), ("Vienna", "Austria"), ("Prague", "Czech Republic"),
    ("Warsaw", "Poland"), ("Stockholm", "Sweden"), ("Oslo", "Norway"), ("Toronto", "Canada"),
    ("Chicago", "United States"), ("Boston", "United States"), ("Tokyo", "Japan"),
]  # fmt: skip
ADJECTIVES = [
    "Silent", "Golden", "Hidden", "Broken", "Distant", "Crimson", "Quiet", "Frozen", "Burning", "Secret",
    "Lonely", "Wild", "Last", "Lost", "Bright", "Hollow", "Endless", "Gentle",
]  # fmt: skip
NOUNS = [
    "River", "Garden", "Winter", "Harbor", "Mountain", "Letter", "Mirror", "Forest", "Island", "Shadow",
    "Storm", "Bridge", "Lantern", "Orchard", "Tide",
]  # fmt: skip


def people(rng: random.Random, count: int) -> list[str]:
    """`count` distinct full names."""
    names = [f"{first} {last}" for first in FIRST for last in LAST]
    return rng.sample(names, count)


def titles(rng: random.Random, count: int) -> list[str]:
    """`count` distinct titles such as 'The Silent River' or 'Winter of Mirrors'."""
    options = [f"The {a} {n}" for a in ADJECTIVES for n in NOUNS]
    options += [f"{n} of {m}s" for n in NOUNS for m in NOUNS if n != m]
    return rng.sample(options, count)


def day(rng: random.Random, start: int, end: int) -> str:
    """An ISO date between 1 January of `start` and 31 December of `end`."""
    first = date(start, 1, 1)
    return (first + timedelta(days=rng.randrange((date(end, 12, 31) - first).days + 1))).isoformat()


def money(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 2)


Rows = dict[str, list[tuple]]


@dataclass
class Domain:
    name: str
    ddl: str
    rows: Callable[[random.Random], Rows]


# ---- bookstore -------------------------------------------------------------------------------------
BOOKSTORE = """
CREATE TABLE authors (author_id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT, birth_year INTEGER);
CREATE TABLE publishers (publisher_id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT, founded_year INTEGER);
CREATE TABLE books (
  book_id INTEGER PRIMARY KEY, title TEXT NOT NULL,
  author_id INTEGER REFERENCES authors(author_id), publisher_id INTEGER REFERENCES publishers(publisher_id),
  genre TEXT, publication_year INTEGER, price REAL, pages INTEGER);
CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT, joined_date TEXT);
CREATE TABLE orders (
  order_id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(customer_id),
  book_id INTEGER REFERENCES books(book_id), order_date TEXT, quantity INTEGER);
"""


def bookstore(rng: random.Random) -> Rows:
    genres = ["Fantasy", "Mystery", "Romance", "Science Fiction", "History", "Biography", "Poetry"]
    houses = ["Northwind Press", "Blue Owl Books", "Harbor House", "Lantern Publishing", "Meridian Books",
              "Red Fern Editions", "Atlas & Quill", "Stonebridge Press"]  # fmt: skip
    authors = [
        (i + 1, n, rng.choice(PLACES)[1], rng.randint(1940, 1995)) for i, n in enumerate(people(rng, 24))
    ]
    publishers = [(i + 1, n, rng.choice(PLACES)[0], rng.randint(1890, 2015)) for i, n in enumerate(houses)]
    books = [
        (i + 1, t, rng.randint(1, 24), rng.randint(1, 8), rng.choice(genres), rng.randint(1975, 2023),
         money(rng, 6, 45), rng.randint(120, 900))
        for i, t in enumerate(titles(rng, 70))
    ]  # fmt: skip
    customers = [
        (i + 1, n, rng.choice(PLACES)[0], day(rng, 2015, 2023)) for i, n in enumerate(people(rng, 40))
    ]
    orders = [
        (
            i + 1,
            rng.randint(1, 40),
            rng.randint(1, 70),
            day(rng, 2020, 2024),
            rng.choice([1, 1, 1, 2, 2, 3, 5]),
        )
        for i in range(160)
    ]
    return {
        "authors": authors,
        "publishers": publishers,
        "books": books,
        "customers": customers,
        "orders": orders,
    }


# ---- university ------------------------------------------------------------------------------------
UNIVERSITY = """
CREATE TABLE departments (dept_id INTEGER PRIMARY KEY, name TEXT NOT NULL, building TEXT, budget REAL);
CREATE TABLE instructors (
  instructor_id INTEGER PRIMARY KEY, name TEXT NOT NULL, dept_id INTEGER REFERENCES departments(dept_id),
  salary INTEGER, hire_year INTEGER);
CREATE TABLE students (
  student_id INTEGER PRIMARY KEY, name TEXT NOT NULL, dept_id INTEGER REFERENCES departments(dept_id),
  enrollment_year INTEGER, gpa REAL);
CREATE TABLE courses (
  course_id INTEGER PRIMARY KEY, title TEXT NOT NULL, dept_id INTEGER REFERENCES departments(dept_id),
  credits INTEGER);
CREATE TABLE enrollments (
  student_id INTEGER REFERENCES students(student_id), course_id INTEGER REFERENCES courses(course_id),
  semester TEXT, grade TEXT, PRIMARY KEY (student_id, course_id));
"""


def university(rng: random.Random) -> Rows:
    names = [
        "Physics",
        "Mathematics",
        "History",
        "Biology",
        "Computer Science",
        "Economics",
        "Philosophy",
        "Chemistry",
    ]
    buildings = ["Newton Hall", "Curie Building", "Main Hall", "Darwin Center", "Turing Tower"]
    departments = [
        (i + 1, n, rng.choice(buildings), float(rng.randrange(200, 1200) * 1000)) for i, n in enumerate(names)
    ]
    instructors = [
        (i + 1, n, rng.randint(1, 8), rng.randrange(52, 140) * 1000, rng.randint(1995, 2023))
        for i, n in enumerate(people(rng, 30))
    ]
    students = [
        (i + 1, n, rng.randint(1, 8), rng.randint(2019, 2024), round(rng.uniform(2.0, 4.0), 2))
        for i, n in enumerate(people(rng, 80))
    ]
    levels = ["Introduction to", "Advanced", "Topics in", "Foundations of", "Seminar in"]
    courses = []
    for dept_id, subject in enumerate(names, start=1):
        for level in rng.sample(levels, 3):
            courses.append((len(courses) + 1, f"{level} {subject}", dept_id, rng.choice([3, 4, 4, 6])))
    pairs = rng.sample([(s, c) for s in range(1, 81) for c in range(1, len(courses) + 1)], 220)
    enrollments = [
        (s, c, rng.choice(["Fall 2023", "Spring 2024", "Fall 2024"]), rng.choice("AABBBCCDF"))
        for s, c in sorted(pairs)
    ]
    return {"departments": departments, "instructors": instructors, "students": students, "courses": courses,
            "enrollments": enrollments}  # fmt: skip


# ---- music -----------------------------------------------------------------------------------------
MUSIC = """
CREATE TABLE artists (artist_id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT, genre TEXT, formed_year INTEGER);
CREATE TABLE albums (
  album_id INTEGER PRIMARY KEY, title TEXT NOT NULL, artist_id INTEGER REFERENCES artists(artist_id),
  release_year INTEGER, record_label TEXT, sales INTEGER);
CREATE TABLE songs (
  song_id INTEGER PRIMARY KEY, title TEXT NOT NULL, album_id INTEGER REFERENCES albums(album_id),
  duration_seconds INTEGER, track_number INTEGER);
CREATE TABLE concerts (
  concert_id INTEGER PRIMARY KEY, artist_id INTEGER REFERENCES artists(artist_id), city TEXT, venue TEXT,
  concert_date TEXT, attendance INTEGER, ticket_price REAL);
"""


def music(rng: random.Random) -> Rows:
    bands = ["The Velvet Owls", "Neon Harbor", "Paper Satellites", "Glass Animals Club", "Midnight Ferns",
             "Copper Tide", "Echo Valley", "The Quiet Storms", "Solar Canyon", "Lunar Parade",
             "Iron Lanterns", "Static Bloom", "Wild Orchard", "Northern Lights Trio"]  # fmt: skip
    genres = ["Rock", "Pop", "Jazz", "Electronic", "Folk", "Hip Hop"]
    labels = ["Sunset Records", "Blue Note Media", "Polar Sound", "Vinyl Street"]
    venues = ["City Arena", "Grand Theatre", "Open Air Park", "Riverside Hall", "Stadium North"]
    artists = [
        (i + 1, n, rng.choice(PLACES)[1], rng.choice(genres), rng.randint(1975, 2018))
        for i, n in enumerate(bands)
    ]
    albums = [
        (
            i + 1,
            t,
            rng.randint(1, len(bands)),
            rng.randint(1980, 2024),
            rng.choice(labels),
            rng.randrange(5, 900) * 1000,
        )
        for i, t in enumerate(titles(rng, 36))
    ]
    songs = []
    for album_id in range(1, 37):
        for track, name in enumerate(titles(rng, rng.randint(3, 7)), start=1):
            songs.append((len(songs) + 1, name, album_id, rng.randint(140, 420), track))
    concerts = [
        (i + 1, rng.randint(1, len(bands)), rng.choice(PLACES)[0], rng.choice(venues), day(rng, 2019, 2024),
         rng.randrange(8, 600) * 100, money(rng, 25, 180))
        for i in range(70)
    ]  # fmt: skip
    return {"artists": artists, "albums": albums, "songs": songs, "concerts": concerts}


# ---- retail ----------------------------------------------------------------------------------------
RETAIL = """
CREATE TABLE stores (store_id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT, opened_year INTEGER, floor_area INTEGER);
CREATE TABLE employees (
  employee_id INTEGER PRIMARY KEY, name TEXT NOT NULL, store_id INTEGER REFERENCES stores(store_id),
  role TEXT, salary INTEGER, hire_date TEXT);
CREATE TABLE products (product_id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT, price REAL, stock INTEGER);
CREATE TABLE sales (
  sale_id INTEGER PRIMARY KEY, store_id INTEGER REFERENCES stores(store_id),
  product_id INTEGER REFERENCES products(product_id), employee_id INTEGER REFERENCES employees(employee_id),
  sale_date TEXT, quantity INTEGER);
"""
PRODUCTS = {
    "Electronics": [
        "Wireless Mouse",
        "USB Keyboard",
        "Bluetooth Speaker",
        "Smart Watch",
        "Headphones",
        "Webcam",
    ],
    "Kitchen": ["Coffee Maker", "Blender", "Toaster", "Chef Knife", "Frying Pan", "Kettle"],
    "Garden": ["Garden Hose", "Pruning Shears", "Flower Pot", "Lawn Chair", "Watering Can"],
    "Sports": ["Yoga Mat", "Tennis Racket", "Football", "Running Shoes", "Water Bottle"],
    "Toys": ["Puzzle Box", "Toy Train", "Building Blocks", "Plush Bear"],
}


def retail(rng: random.Random) -> Rows:
    places = rng.sample(PLACES, 9)
    stores = [
        (i + 1, f"{city} {rng.choice(['Central', 'Market', 'Outlet', 'Plaza'])}", city, rng.randint(1998, 2022),
         rng.randrange(30, 250) * 10)
        for i, (city, _) in enumerate(places)
    ]  # fmt: skip
    roles = ["Cashier", "Cashier", "Sales Associate", "Sales Associate", "Manager", "Stock Clerk"]
    employees = [
        (i + 1, n, rng.randint(1, 9), rng.choice(roles), rng.randrange(24, 75) * 1000, day(rng, 2012, 2024))
        for i, n in enumerate(people(rng, 45))
    ]
    products = []
    for category, names in PRODUCTS.items():
        for name in names:
            products.append((len(products) + 1, name, category, money(rng, 4, 250), rng.randint(0, 400)))
    sales = []
    for i in range(220):
        employee = rng.choice(employees)
        sales.append((i + 1, employee[2], rng.randint(1, len(products)), employee[0], day(rng, 2023, 2024),
                      rng.choice([1, 1, 1, 2, 2, 3, 4, 6])))  # fmt: skip
    return {"stores": stores, "employees": employees, "products": products, "sales": sales}


# ---- hospital --------------------------------------------------------------------------------------
HOSPITAL = """
CREATE TABLE doctors (doctor_id INTEGER PRIMARY KEY, name TEXT NOT NULL, specialty TEXT, years_experience INTEGER);
CREATE TABLE patients (patient_id INTEGER PRIMARY KEY, name TEXT NOT NULL, gender TEXT, city TEXT, age INTEGER);
CREATE TABLE medications (medication_id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT, unit_price REAL);
CREATE TABLE appointments (
  appointment_id INTEGER PRIMARY KEY, patient_id INTEGER REFERENCES patients(patient_id),
  doctor_id INTEGER REFERENCES doctors(doctor_id), appointment_date TEXT, reason TEXT, fee REAL);
CREATE TABLE prescriptions (
  prescription_id INTEGER PRIMARY KEY, appointment_id INTEGER REFERENCES appointments(appointment_id),
  medication_id INTEGER REFERENCES medications(medication_id), dosage_mg INTEGER, days INTEGER);
"""
MEDICATIONS = [
    ("Amoxicillin", "Antibiotic"), ("Azithromycin", "Antibiotic"), ("Ibuprofen", "Painkiller"),
    ("Paracetamol", "Painkiller"), ("Naproxen", "Painkiller"), ("Metformin", "Diabetes"),
    ("Insulin Glargine", "Diabetes"), ("Lisinopril", "Blood Pressure"), ("Amlodipine", "Blood Pressure"),
    ("Cetirizine", "Allergy"), ("Loratadine", "Allergy"), ("Omeprazole", "Digestive"),
]  # fmt: skip


def hospital(rng: random.Random) -> Rows:
    specialties = ["Cardiology", "Dermatology", "Neurology", "Pediatrics", "Orthopedics", "General Practice"]
    reasons = ["Annual checkup", "Back pain", "Flu symptoms", "Skin rash", "Headache", "Chest pain",
               "Follow-up visit", "Allergy", "Sports injury"]  # fmt: skip
    doctors = [
        (i + 1, f"Dr. {n}", rng.choice(specialties), rng.randint(2, 35))
        for i, n in enumerate(people(rng, 18))
    ]
    patients = [
        (i + 1, n, rng.choice(["female", "male"]), rng.choice(PLACES[:8])[0], rng.randint(1, 92))
        for i, n in enumerate(people(rng, 60))
    ]
    medications = [(i + 1, n, c, money(rng, 0.2, 12)) for i, (n, c) in enumerate(MEDICATIONS)]
    appointments = [
        (i + 1, rng.randint(1, 60), rng.randint(1, 18), day(rng, 2023, 2024), rng.choice(reasons), float(rng.choice([40, 60, 80, 120, 150])))
        for i in range(150)
    ]  # fmt: skip
    prescriptions = [
        (i + 1, rng.randint(1, 150), rng.randint(1, len(MEDICATIONS)), rng.choice([5, 10, 20, 250, 500]), rng.choice([3, 5, 7, 10, 14, 30]))
        for i in range(120)
    ]  # fmt: skip
    return {"doctors": doctors, "patients": patients, "medications": medications, "appointments": appointments,
            "prescriptions": prescriptions}  # fmt: skip


# ---- flights ---------------------------------------------------------------------------------------
FLIGHTS = """
CREATE TABLE airports (airport_code TEXT PRIMARY KEY, name TEXT NOT NULL, city TEXT, country TEXT);
CREATE TABLE airlines (airline_id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT, founded_year INTEGER, fleet_size INTEGER);
CREATE TABLE flights (
  flight_id INTEGER PRIMARY KEY, flight_number TEXT NOT NULL, airline_id INTEGER REFERENCES airlines(airline_id),
  origin TEXT REFERENCES airports(airport_code), destination TEXT REFERENCES airports(airport_code),
  departure_date TEXT, duration_minutes INTEGER, price REAL);
CREATE TABLE passengers (passenger_id INTEGER PRIMARY KEY, name TEXT NOT NULL, nationality TEXT, age INTEGER);
CREATE TABLE bookings (
  booking_id INTEGER PRIMARY KEY, flight_id INTEGER REFERENCES flights(flight_id),
  passenger_id INTEGER REFERENCES passengers(passenger_id), seat_class TEXT, fare REAL);
"""


def flights(rng: random.Random) -> Rows:
    cities = rng.sample(PLACES, 12)
    airports = sorted(
        (city[:3].upper(), f"{city} International Airport", city, country) for city, country in cities
    )
    carriers = [
        "Atlantic Air",
        "Nordic Wings",
        "Sunline Airways",
        "Alpine Jet",
        "Coastal Airlines",
        "Aurora Air",
    ]
    airlines = [
        (i + 1, n, rng.choice(PLACES)[1], rng.randint(1950, 2015), rng.randint(12, 320))
        for i, n in enumerate(carriers)
    ]
    flights_rows = []
    for i in range(90):
        origin, destination = rng.sample(airports, 2)
        airline = rng.randint(1, len(carriers))
        flights_rows.append(
            (i + 1, f"{carriers[airline - 1][:2].upper()}{rng.randint(100, 9999)}", airline, origin[0], destination[0],
             day(rng, 2024, 2024), rng.randint(45, 720), money(rng, 39, 900))
        )  # fmt: skip
    passengers = [
        (i + 1, n, rng.choice(PLACES)[1], rng.randint(2, 85)) for i, n in enumerate(people(rng, 70))
    ]
    bookings = [
        (i + 1, rng.randint(1, 90), rng.randint(1, 70), rng.choice(["Economy", "Economy", "Economy", "Business", "First"]),
         money(rng, 39, 1500))
        for i in range(200)
    ]  # fmt: skip
    return {"airports": airports, "airlines": airlines, "flights": flights_rows, "passengers": passengers,
            "bookings": bookings}  # fmt: skip


DOMAINS = [
    Domain("bookstore", BOOKSTORE, bookstore),
    Domain("university", UNIVERSITY, university),
    Domain("music", MUSIC, music),
    Domain("retail", RETAIL, retail),
    Domain("hospital", HOSPITAL, hospital),
    Domain("flights", FLIGHTS, flights),
]
