"""Readers for every MovieLens layout, on hand-written files in the real formats."""

import pytest

from ondevice_rec.data import movielens


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))


def test_ml1m_reads_latin1_titles_and_genres(tmp_path):
    write(tmp_path / "ratings.dat", "1::3::4::978300760\n2::1::5::978300761\n")
    write(tmp_path / "movies.dat",
          "1::Toy Story (1995)::Animation|Children's|Comedy\n"
          "3::Cité des enfants perdus, La (City of Lost Children, The) (1995)::Adventure|Sci-Fi\n",
          encoding="latin-1")
    assert movielens.detect_format(str(tmp_path)) is movielens.ML_1M
    ratings = list(movielens.read_ratings(str(tmp_path)))
    assert ratings == [movielens.Rating(1, 3, 4.0, 978300760), movielens.Rating(2, 1, 5.0, 978300761)]
    movies = movielens.read_movies(str(tmp_path))
    assert movies[3].title == "Cité des enfants perdus, La (City of Lost Children, The)"
    assert movies[3].year == 1995 and movies[3].genres == ("Adventure", "Sci-Fi")
    assert movies[1].genres == ("Animation", "Children's", "Comedy")


def test_ml100k_reads_tab_separated_ratings_and_genre_flags(tmp_path):
    write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    genres = movielens.ML100K_GENRES
    flags = ["0"] * 19
    flags[genres.index("Comedy")] = flags[genres.index("Romance")] = "1"
    write(tmp_path / "u.item", f"242|Kolya (1996)|24-Jan-1997||http://x|{'|'.join(flags)}\n"
                               f"302|L.A. Confidential (1997)|01-Jan-1997||http://y|{'|'.join(['0'] * 19)}\n"
                               f"1682|Scream of Stone (Schrei aus Stein) (1991)|08-Mar-1996||u|{'|'.join(['0'] * 19)}\n"
                               f"1300|'Til There Was You (1997)|01-Jan-1997||u|{'|'.join(['0'] * 19)}\n"
                               f"1500|Misérables, Les (1995)|01-Jan-1995||u|{'|'.join(['0'] * 19)}\n",
          encoding="latin-1")
    assert movielens.detect_format(str(tmp_path)) is movielens.ML_100K
    assert [r.movie_id for r in movielens.read_ratings(str(tmp_path))] == [242, 302]
    movies = movielens.read_movies(str(tmp_path))
    assert movies[242].genres == ("Comedy", "Romance") and movies[242].year == 1996
    assert movies[302].genres == ()
    assert movies[1500].title == "Misérables, Les"


def test_ml_latest_reads_quoted_titles_with_commas_and_half_stars(tmp_path):
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,3.5,964981247\n")
    write(tmp_path / "movies.csv",
          'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
          '3,"American President, The (1995)",Comedy|Drama|Romance\n'
          '5,"Amélie (Fabuleux destin d\'Amélie Poulain, Le) (2001)",(no genres listed)\n'
          '7,Babylon 5,Sci-Fi\n')
    assert movielens.detect_format(str(tmp_path)) is movielens.ML_LATEST
    ratings = list(movielens.read_ratings(str(tmp_path)))
    assert ratings[1] == movielens.Rating(1, 3, 3.5, 964981247)
    movies = movielens.read_movies(str(tmp_path))
    assert movies[3].title == "American President, The" and movies[3].year == 1995
    assert movies[5].title.startswith("Amélie (Fabuleux destin") and movies[5].genres == ()
    assert movies[7] == movielens.Movie(7, "Babylon 5", ("Sci-Fi",), 0)


def test_malformed_rating_line_names_file_and_line(tmp_path):
    write(tmp_path / "ratings.dat", "1::3::4::978300760\n1::x::4::978300761\n")
    write(tmp_path / "movies.dat", "3::A (1990)::Drama\n")
    with pytest.raises(movielens.DataFormatError, match=r"ratings\.dat:2: column 1: id 'x' is not a positive integer"):
        list(movielens.read_ratings(str(tmp_path)))


def test_wrong_separator_is_reported(tmp_path):
    write(tmp_path / "ratings.dat", "1,3,4,978300760\n")
    write(tmp_path / "movies.dat", "3::A (1990)::Drama\n")
    with pytest.raises(movielens.DataFormatError, match=r"ratings\.dat:1: the delimiter is '::' but .* into 4 with ','"):
        list(movielens.read_ratings(str(tmp_path)))


def test_missing_or_ambiguous_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        movielens.detect_format(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="no MovieLens ratings file"):
        movielens.detect_format(str(tmp_path))
    write(tmp_path / "ratings.dat", "1::3::4::978300760\n")
    with pytest.raises(FileNotFoundError, match="movies.dat is missing"):
        movielens.detect_format(str(tmp_path))


@pytest.mark.realdata
def test_real_ml100k_counts(ml100k_dir):
    ratings = list(movielens.read_ratings(ml100k_dir))
    movies = movielens.read_movies(ml100k_dir)
    assert len(ratings) == 100_000
    assert len({r.user_id for r in ratings}) == 943
    assert len(movies) == 1682
    assert all(1 <= r.rating <= 5 for r in ratings)
